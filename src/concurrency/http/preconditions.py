"""Evaluating If-Match and If-None-Match for one request, and the view decorators that do it."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from .._bases import ObjectViewBase
from ..conf import conf
from ..core.options import version_of
from ..core.versions import database_of
from ..exceptions import RecordModifiedError
from .etags import make_etag, version_from_etag
from .problems import (
    InvalidPrecondition,
    PreconditionError,
    PreconditionFailed,
    PreconditionRequired,
    conflict_error,
    not_modified,
)

if TYPE_CHECKING:
    from django.db.models import Model

V = TypeVar("V", bound=Callable[..., Any])

WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
_TAG_RE = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_SEPARATORS_RE = re.compile(r"[ \t,]*")
_OWS_RE = re.compile(r"[ \t]*")
# Far above any real list of tags; longer values are refused before parsing.
_MAX_HEADER_LENGTH = 8192


def _skip(pattern: re.Pattern[str], value: str, pos: int) -> int:
    """Return where the run of ``pattern`` (which matches the empty string) starting at ``pos`` ends."""
    match = pattern.match(value, pos)
    return pos if match is None else match.end()


def parse_entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """Parse an If-Match / If-None-Match value: ``None`` for ``*``, else (weak, opaque) pairs.

    Raise ``InvalidPrecondition`` when the value is not the RFC 9110 grammar
    (``"*" / #entity-tag``), so that garbage is never mistaken for "no
    precondition".
    """
    if len(value) > _MAX_HEADER_LENGTH:
        raise InvalidPrecondition("The precondition header is too long.")
    if value.strip(" \t") == "*":
        return None
    tags: list[tuple[bool, str]] = []
    pos, end = 0, len(value)
    while True:
        pos = _skip(_SEPARATORS_RE, value, pos)
        if pos == end:
            break
        match = _TAG_RE.match(value, pos)
        if match is None:
            raise InvalidPrecondition(
                'The precondition header must be "*" or a list of quoted entity tags, such as "3-…".'
            )
        tags.append((bool(match[1]), match[2]))
        pos = _skip(_OWS_RE, value, match.end())
        if pos < end and value[pos] != ",":
            raise InvalidPrecondition("Entity tags in the precondition header must be separated by commas.")
    if not tags:
        raise InvalidPrecondition("The precondition header is empty.")
    return tags


class Preconditions:
    """The preconditions of one request, applied to the one instance it reads or writes."""

    def __init__(
        self,
        method: str,
        headers: Any,
        *,
        require_if_match: bool | None = None,
        write_methods: Iterable[str] = WRITE_METHODS,
    ) -> None:
        self.method = (method or "GET").upper()
        self.headers = headers
        self.require_if_match = conf.REQUIRE_IF_MATCH if require_if_match is None else require_if_match
        self.write_methods = frozenset(m.upper() for m in write_methods)
        self.instance: Model | None = None
        # The version the write is bound to, when If-Match named one.
        self.version: int | None = None
        # If-None-Match matched on a GET or HEAD: the 2xx answer becomes a 304.
        self.not_modified = False
        # "If-Match: *" was sent (and the row exists).
        self.star = False

    @property
    def is_write(self) -> bool:
        return self.method in self.write_methods

    @property
    def from_if_match(self) -> bool:
        return self.version is not None

    def apply(self, instance: Model) -> Model:
        """Evaluate If-Match / If-None-Match against ``instance`` and bind its version.

        Raise a ``PreconditionError`` subclass when the request must stop here.
        """
        if instance._state.adding:
            raise ImproperlyConfigured(
                "Preconditions apply to an instance loaded from the database, "
                f"not to an unsaved {type(instance).__name__}."
            )
        if self.is_write:
            using = database_of(instance)
            if instance._state.db != using and not _in_event_loop():
                # Read from a replica: compare If-Match with the row the write will meet.
                # (Not possible from async code: there a lagging replica can cause a
                # 412, never a lost write, since the UPDATE is checked on the primary.)
                instance.refresh_from_db(using=using)
        self.instance = instance
        self.version = None
        self.star = False
        self.not_modified = False
        if_match = self.headers.get("If-Match")
        if if_match is not None:
            self._apply_if_match(instance, if_match)
        elif self.is_write and self.require_if_match:
            raise PreconditionRequired(
                "This request must carry an If-Match header with the ETag you read, "
                "so that it cannot overwrite a change you have not seen.",
                instance=instance,
            )
        # RFC 9110 §13.2.2: If-None-Match is evaluated after a true If-Match too.
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            self._apply_if_none_match(instance, if_none_match)
        return instance

    def _apply_if_match(self, instance: Model, value: str) -> None:
        tags = parse_entity_tags(value)
        if tags is None:
            # "*": any current representation (RFC 9110 §13.1.1). The row
            # exists, so the write goes on, still conditional on the version
            # loaded in this request.
            self.star = True
            return
        current = version_of(instance)
        model = type(instance)
        named = [
            version
            for weak, opaque in tags
            if not weak and (version := version_from_etag(model, instance.pk, opaque)) is not None
        ]
        if current not in named:
            if named:
                detail = (
                    f"If-Match names version {max(named)}, but the record is now at version {current}. "
                    "Fetch it again and reapply your change."
                )
            else:
                detail = (
                    "If-Match names no version of this record (weak, foreign and unknown tags never match)."
                )
            raise PreconditionFailed(detail, instance=instance, version=current)
        # The version the client read is the one loaded here, and so the one
        # the conditional UPDATE or DELETE is made with: anything written
        # since this load makes that statement match no row (412).
        self.version = current

    def _apply_if_none_match(self, instance: Model, value: str) -> None:
        tags = parse_entity_tags(value)
        etag = make_etag(instance)[1:-1]
        # Weak comparison (RFC 9110 §13.1.2): W/ is ignored.
        matches = tags is None or any(opaque == etag for _weak, opaque in tags)
        if not matches:
            return
        if self.method in ("GET", "HEAD"):
            # The view goes on: its 200 becomes the 304 in finish(), with the
            # caching headers the 200 would have carried.
            self.not_modified = True
            return
        raise PreconditionFailed(
            "If-None-Match matches the current version of the record.", instance=instance
        )

    def handle(self, error: Exception) -> HttpResponse | None:
        """Return the response for ``error`` raised by the view, or ``None`` to re-raise it."""
        if isinstance(error, PreconditionError):
            return error.response()
        if isinstance(error, RecordModifiedError) and self.concerns(error):
            return conflict_error(error, from_if_match=self.from_if_match).response()
        return None

    def concerns(self, error: RecordModifiedError) -> bool:
        """Return whether ``error`` is about the instance the preconditions were applied to."""
        instance = self.instance
        if instance is None or error.target is None:
            return False
        return error.target is instance or (
            error.model is not None
            and error.model._meta.concrete_model is type(instance)._meta.concrete_model
            and error.pk == instance.pk
        )

    def finish(self, response: HttpResponseBase) -> HttpResponseBase:
        """Give a successful response the ETag of the instance as it is now.

        After a matching If-None-Match on GET or HEAD, return the 304 that
        stands for it instead. Other statuses are left alone (RFC 9110
        §13.2.1: a conditional answers only what would have been a 2xx).
        """
        instance = self.instance
        if not 200 <= response.status_code < 300:
            return response
        if (
            instance is not None
            and instance.pk is not None
            and self.method != "DELETE"
            and not response.has_header("ETag")
        ):
            response["ETag"] = make_etag(instance)
        if self.not_modified and self.method in ("GET", "HEAD"):
            return not_modified(response)
        return response


REQUEST_ATTR = "_concurrency_preconditions"


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def for_request(request: Any) -> Preconditions | None:
    """Return the preconditions ``start()`` attached to ``request``, if any."""
    return getattr(request, REQUEST_ATTR, None)


def apply_preconditions(request: HttpRequest, instance: Model) -> Model:
    """Apply the request's If-Match / If-None-Match to ``instance`` and return it.

    Call it in a view wrapped by ``@preconditions`` (or using
    ``PreconditionMixin``) right after loading the instance. On a write, the
    version named by If-Match becomes the version the instance is saved or
    deleted with; a stale, weak or foreign tag stops the request with 412, a
    missing one with 428 when required, a malformed one with 400. On GET and
    HEAD a matching If-None-Match stops it with 304. The response then carries
    the ETag of the instance as saved.
    """
    state = for_request(request)
    if state is None:
        raise ImproperlyConfigured(
            "apply_preconditions() needs a view decorated with @preconditions or using PreconditionMixin."
        )
    return state.apply(instance)


def start(request: HttpRequest, require_if_match: bool | None, write_methods: Iterable[str]) -> Preconditions:
    state = Preconditions(
        request.method or "GET",
        request.headers,
        require_if_match=require_if_match,
        write_methods=write_methods,
    )
    setattr(request, REQUEST_ATTR, state)
    return state


def _run(state: Preconditions, call: Callable[[], HttpResponseBase]) -> HttpResponseBase:
    try:
        response = call()
    except (PreconditionError, RecordModifiedError) as error:
        handled = state.handle(error)
        if handled is None:
            raise
        return handled
    return state.finish(response)


async def _arun(state: Preconditions, call: Callable[[], Awaitable[HttpResponseBase]]) -> HttpResponseBase:
    try:
        response = await call()
    except (PreconditionError, RecordModifiedError) as error:
        handled = state.handle(error)
        if handled is None:
            raise
        return handled
    return state.finish(response)


@overload
def preconditions(view: V) -> V: ...


@overload
def preconditions(
    view: None = None,
    *,
    require_if_match: bool | None = None,
    write_methods: Iterable[str] = WRITE_METHODS,
) -> Callable[[V], V]: ...


def preconditions(
    view: V | None = None,
    *,
    require_if_match: bool | None = None,
    write_methods: Iterable[str] = WRITE_METHODS,
) -> V | Callable[[V], V]:
    """Decorate a function view (sync or async) that calls ``apply_preconditions``.

    ``require_if_match`` (default ``CONCURRENCY_REQUIRE_IF_MATCH``) makes a
    write without If-Match a 428; ``write_methods`` are the methods that count
    as writes. A refused save or delete of the instance becomes 412 when its
    version came from If-Match, 409 otherwise; successful responses carry the
    instance's new ETag.
    """
    methods = frozenset(write_methods)

    def decorate(func: V) -> V:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                state = start(request, require_if_match, methods)
                return await _arun(state, lambda: func(request, *args, **kwargs))

            return cast(V, async_view)

        @functools.wraps(func)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            state = start(request, require_if_match, methods)
            return _run(state, lambda: func(request, *args, **kwargs))

        return cast(V, sync_view)

    if view is not None:
        return decorate(view)
    return decorate


class PreconditionMixin(ObjectViewBase):
    """Preconditions for a class-based view; put it before ``View`` in the bases.

    ``get_object()`` results have the preconditions applied; other views call
    ``apply_preconditions(self.request, obj)`` themselves. Async views work.
    """

    require_if_match: bool | None = None
    write_methods: Iterable[str] = WRITE_METHODS

    view_is_async: bool
    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        state = start(request, self.require_if_match, self.write_methods)
        parent: Any = super().dispatch
        if self.view_is_async:
            return _arun(state, lambda: parent(request, *args, **kwargs))
        return _run(state, lambda: parent(request, *args, **kwargs))

    def get_object(self, queryset: Any = None) -> Any:
        obj = super().get_object(queryset)
        return apply_preconditions(self.request, obj)
