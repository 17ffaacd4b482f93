"""ETag / If-Match, 412 and 428 for django-ninja operations (the ``[ninja]`` extra).

The same preconditions as ``concurrency.http``, for operations of a
``NinjaAPI`` or ``Router``: decorate the operation with ``@preconditions``
*below* the route decorator and call ``apply_preconditions(request, obj)``
right after loading the instance::

    from concurrency.ninja import apply_preconditions, preconditions

    @router.put("/articles/{pk}", response=ArticleOut)
    @preconditions
    def update_article(request, pk: int, payload: ArticleIn):
        article = apply_preconditions(request, get_object_or_404(Article, pk=pk))
        for name, value in payload.dict().items():
            setattr(article, name, value)
        article.save()  # the UPDATE is made with the version named by If-Match
        return article

A stale ``If-Match`` is 412, a write without one 428 (``require_if_match``,
default ``CONCURRENCY_REQUIRE_IF_MATCH``), a malformed one 400; a refused
save or delete of the instance is 412 (409 when its version did not come from
``If-Match``). Errors are ``application/problem+json`` bodies with the current
``version``; successful responses carry the instance's new ``ETag``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from django.http import HttpRequest, HttpResponse
from ninja.decorators import decorate_view
from ninja.utils import contribute_operation_callback

from .exceptions import RecordModifiedError
from .http import WRITE_METHODS, PreconditionError, apply_preconditions, make_etag
from .http.preconditions import for_request, start

__all__ = ["apply_preconditions", "make_etag", "preconditions"]

F = TypeVar("F", bound=Callable[..., Any])


def _answer(request: HttpRequest, error: Exception) -> HttpResponse:
    """Return the response for ``error`` raised by an operation, or re-raise it."""
    state = for_request(request)
    response = state.handle(error) if state is not None else None
    if response is None:
        raise error
    return response


def _catching(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an operation's function so that its refused writes become responses.

    Inside the operation, not around ``Operation.run``: the API's exception
    handlers (a 500 page for any exception under ``DEBUG``) would answer first.
    """
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_operation(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                return await func(request, *args, **kwargs)
            except (PreconditionError, RecordModifiedError) as error:
                return _answer(request, error)

        return async_operation

    @functools.wraps(func)
    def operation(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(request, *args, **kwargs)
        except (PreconditionError, RecordModifiedError) as error:
            return _answer(request, error)

    return operation


def _starting(require_if_match: bool | None, write_methods: frozenset[str]) -> Callable[[Any], Any]:
    """Return a decorator of ``Operation.run``: preconditions before, the ETag after."""

    def decorate(run: Any) -> Any:
        if inspect.iscoroutinefunction(run):

            @functools.wraps(run)
            async def async_run(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                state = start(request, require_if_match, write_methods)
                return state.finish(await run(request, *args, **kwargs))

            return async_run

        @functools.wraps(run)
        def sync_run(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            state = start(request, require_if_match, write_methods)
            return state.finish(run(request, *args, **kwargs))

        return sync_run

    return decorate


@overload
def preconditions(func: F) -> F: ...


@overload
def preconditions(
    func: None = None,
    *,
    require_if_match: bool | None = None,
    write_methods: Iterable[str] = WRITE_METHODS,
) -> Callable[[F], F]: ...


def preconditions(
    func: F | None = None,
    *,
    require_if_match: bool | None = None,
    write_methods: Iterable[str] = WRITE_METHODS,
) -> F | Callable[[F], F]:
    """Give a django-ninja operation (sync or async) HTTP preconditions.

    Put it below the ``@api.get``/``@router.put``… decorator. The arguments
    are those of ``concurrency.http.preconditions``.
    """
    methods = frozenset(m.upper() for m in write_methods)

    def decorate(op_func: F) -> F:
        def contribute(operation: Any) -> None:
            operation.view_func = _catching(operation.view_func)

        if hasattr(op_func, "_ninja_operation"):
            contribute(op_func._ninja_operation)
        else:
            contribute_operation_callback(op_func, contribute)
        return decorate_view(_starting(require_if_match, methods))(op_func)

    if func is not None:
        return decorate(func)
    return decorate
