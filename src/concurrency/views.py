"""Views and callbacks for refused writes."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from .exceptions import RecordModifiedError

__all__ = ["ConflictResponse", "callback"]


class ConflictResponse(HttpResponse):
    """An HTTP 409 Conflict response."""

    status_code = 409


def callback(target: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``RecordModifiedError`` for ``target`` (the default ``CONCURRENCY_CALLBACK``)."""
    raise RecordModifiedError(target=target)
