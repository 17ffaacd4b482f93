"""Turn a refused save anywhere in a view into a 409 Conflict page."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from .conf import conf
from .exceptions import RecordModifiedError

__all__ = ["ConcurrencyMiddleware"]

logger = logging.getLogger("concurrency")


class ConcurrencyMiddleware:
    """Answer ``RecordModifiedError`` with ``CONCURRENCY_HANDLER409(request, target=...)``.

    Works in both sync and async stacks. Only errors that reach the view layer
    are seen: code that catches ``RecordModifiedError`` itself (``ConcurrentForm``
    users, the admin) handles conflicts its own way.

    ``ConcurrencyMiddleware()`` without ``get_response``, as old-style code and
    tests build it, can only be asked to ``process_exception()``.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any] | None = None) -> None:
        self.get_response = get_response
        self.is_async = get_response is not None and iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.get_response is None:
            raise TypeError(
                "ConcurrencyMiddleware() was created without get_response: list it in MIDDLEWARE, "
                "or call process_exception() directly."
            )
        if self.is_async:
            return self.__acall__(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        assert self.get_response is not None
        return await self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Return the 409 response for a refused write; let other errors through."""
        if not isinstance(exception, RecordModifiedError):
            return None
        logger.info(
            "Conflict on %s pk=%r (version %r, database %r): %s",
            exception.model._meta.label if exception.model is not None else "?",
            exception.pk,
            exception.version,
            exception.db_version,
            request.path,
        )
        handler = conf.HANDLER409
        if isinstance(handler, str):
            handler = import_string(handler)
        return handler(request, target=exception.target)
