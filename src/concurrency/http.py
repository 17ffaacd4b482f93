"""HTTP preconditions (ETag, If-Match, 412, 428) for plain Django views.

The entity tag of a versioned row names its version, so ``If-Match`` can carry
the version a client read. Here that version is not compared in the view and
then forgotten (check-then-act, as Django's ``@condition`` does): it is the
version the instance is saved or deleted with, so the conditional
``UPDATE … WHERE pk = … AND version = …`` of ``concurrency.core`` refuses a
stale write in the statement that would have made it.

An ETag looks like ``"5-Qm9…"``: the version in clear, a dash, and 22 characters
of an HMAC (``SECRET_KEY``) over the concrete model, the primary key and the
version. It is strong, it round-trips to the version on the server, and a tag
issued for one row never matches another row at the same version.

Usage with a function view::

    @preconditions
    def article(request, pk):
        obj = apply_preconditions(request, get_object_or_404(Article, pk=pk))
        if request.method == "PUT":
            ...  # change obj from the request body
            obj.save()  # refused (412) if the row moved past the If-Match version
        return JsonResponse(as_dict(obj))  # answered with the new ETag

``PreconditionMixin`` does the same for class-based views, applying the
preconditions to whatever ``get_object()`` returns.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.utils.crypto import constant_time_compare, salted_hmac

from .api import get_version_fieldname
from .conf import conf
from .exceptions import RecordDeletedError, RecordModifiedError

if TYPE_CHECKING:
    from django.db.models import Model

__all__ = [
    "PROBLEM_TYPES",
    "WRITE_METHODS",
    "InvalidPrecondition",
    "NotModified",
    "PreconditionError",
    "PreconditionFailed",
    "PreconditionMixin",
    "PreconditionRequired",
    "apply_preconditions",
    "make_etag",
    "not_modified",
    "preconditions",
    "problem_response",
    "version_from_etag",
]

V = TypeVar("V", bound=Callable[..., Any])

WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
PROBLEM_CONTENT_TYPE = "application/problem+json"
# RFC 9457 problem types. Tag URIs (RFC 4151) identify without being fetched.
PROBLEM_TYPES = {
    "invalid": "tag:django-optimistic-concurrency,2026:invalid-precondition",
    "stale": "tag:django-optimistic-concurrency,2026:stale-version",
    "deleted": "tag:django-optimistic-concurrency,2026:deleted",
    "required": "tag:django-optimistic-concurrency,2026:precondition-required",
}

_SALT = "concurrency.http.etag"
_MAC_LENGTH = 22  # base64url characters: 132 bits of the HMAC
_OPAQUE_RE = re.compile(rf"(-?[0-9]{{1,19}})-([A-Za-z0-9_-]{{{_MAC_LENGTH}}})")
_TAG_RE = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_SEPARATORS_RE = re.compile(r"[ \t,]*")
_OWS_RE = re.compile(r"[ \t]*")
# Far above any real list of tags; longer values are refused before parsing.
_MAX_HEADER_LENGTH = 8192


# -- entity tags ------------------------------------------------------------


def _row_label(model: type[Model], pk: Any) -> str:
    # Proxies share the concrete model's rows, and so its tags.
    concrete = model._meta.concrete_model or model
    return f"{concrete._meta.label_lower}:{pk}"


def _mac(model: type[Model], pk: Any, version: int) -> str:
    digest = salted_hmac(_SALT, f"{_row_label(model, pk)}:{version}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).decode()[:_MAC_LENGTH]


def make_etag(instance: Model) -> str:
    """Return the strong ETag (quoted) of ``instance`` at the version it holds."""
    version = int(getattr(instance, get_version_fieldname(instance)) or 0)
    model = type(instance)
    return f'"{version}-{_mac(model, instance.pk, version)}"'


def version_from_etag(model: type[Model], pk: Any, etag: str) -> int | None:
    """Return the version named by ``etag`` for the row ``model``/``pk``, or ``None``.

    ``None`` means the tag was not issued for this row by this site: it is
    malformed, forged, weak, or belongs to another row. Quotes are optional.
    """
    if etag.startswith("W/"):
        return None
    opaque = etag[1:-1] if len(etag) >= 2 and etag[0] == etag[-1] == '"' else etag
    match = _OPAQUE_RE.fullmatch(opaque)
    if match is None:
        return None
    version = int(match[1])
    if not constant_time_compare(match[2], _mac(model, pk, version)):
        return None
    return version


def _parse_entity_tags(value: str) -> list[tuple[bool, str]] | None:
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
        pos = _SEPARATORS_RE.match(value, pos).end()  # type: ignore[union-attr]
        if pos == end:
            break
        match = _TAG_RE.match(value, pos)
        if match is None:
            raise InvalidPrecondition(
                'The precondition header must be "*" or a list of quoted entity tags, such as "3-…".'
            )
        tags.append((bool(match[1]), match[2]))
        pos = _OWS_RE.match(value, match.end()).end()  # type: ignore[union-attr]
        if pos < end and value[pos] != ",":
            raise InvalidPrecondition("Entity tags in the precondition header must be separated by commas.")
    if not tags:
        raise InvalidPrecondition("The precondition header is empty.")
    return tags


# -- errors and responses ---------------------------------------------------


class PreconditionError(Exception):
    """A request stopped by its preconditions; ``response()`` is what the client gets.

    ``extra`` holds RFC 9457 extension members, such as the current ``version``.
    """

    status = 400
    title = "Bad Request"
    kind = "invalid"

    def __init__(
        self,
        detail: str,
        *,
        instance: Model | None = None,
        status: int | None = None,
        title: str | None = None,
        kind: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.instance = instance
        self.status = status or self.status
        self.title = title or self.title
        self.kind = kind or self.kind
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """Return the RFC 9457 problem details of this error."""
        return {
            "type": PROBLEM_TYPES[self.kind],
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> HttpResponse:
        """Return the ``application/problem+json`` response for this error."""
        return problem_response(self.problem())


class InvalidPrecondition(PreconditionError):  # noqa: N818 - named after the HTTP status
    """An If-Match or If-None-Match value that is not valid syntax (400)."""


class PreconditionFailed(PreconditionError):  # noqa: N818 - named after the HTTP status
    """If-Match names no current version of the row (412)."""

    status = 412
    title = "Precondition Failed"
    kind = "stale"


class PreconditionRequired(PreconditionError):  # noqa: N818 - named after the HTTP status
    """A write came without the If-Match header the view requires (428)."""

    status = 428
    title = "Precondition Required"
    kind = "required"


class NotModified(PreconditionError):  # noqa: N818 - named after the HTTP status
    """If-None-Match matches the current ETag of a GET or HEAD (304, no body).

    The preconditions of a view do not raise it: they let the view build its
    200 and turn that into the 304 (see ``not_modified``), so that the 304
    carries the headers the 200 would have had. Raise it from your own code to
    answer a bare 304 with the instance's ETag.
    """

    status = 304
    title = "Not Modified"

    def response(self) -> HttpResponse:
        response = HttpResponseNotModified()
        if self.instance is not None:
            response["ETag"] = make_etag(self.instance)
        return response


#: Headers a 304 repeats from the 200 it stands for (RFC 9110 §15.4.5: the
#: validators and the fields that would have gone with a 200 to a cache).
NOT_MODIFIED_HEADERS = (
    "Cache-Control",
    "Content-Location",
    "Date",
    "ETag",
    "Expires",
    "Last-Modified",
    "Vary",
)


def not_modified(response: HttpResponseBase) -> HttpResponseNotModified:
    """Return the 304 that stands for the 2xx ``response``: no body, no ``Content-Type``.

    The 304 carries the validator and caching headers of ``response`` (``ETag``,
    ``Last-Modified``, ``Cache-Control``, ``Expires``, ``Vary``, ``Date``,
    ``Content-Location``) and its cookies, as RFC 9110 §15.4.5 asks, and the
    ``Content-Length`` the 200 had.
    """
    answer = HttpResponseNotModified()
    for name in NOT_MODIFIED_HEADERS:
        if response.has_header(name):
            answer[name] = response[name]
    answer.cookies = response.cookies
    if not response.streaming:
        # A Content-Length in a 304 must be the 200's (RFC 9110 §8.6); giving
        # it keeps CommonMiddleware from adding a wrong "0".
        render = getattr(response, "render", None)
        if callable(render) and not getattr(response, "is_rendered", True):
            render()
        answer["Content-Length"] = str(len(response.content))  # type: ignore[attr-defined]
    return answer


def problem_response(problem: dict[str, Any], encoder: type[json.JSONEncoder] | None = None) -> HttpResponse:
    """Return an ``application/problem+json`` response (RFC 9457) with ``problem`` as its body."""
    return HttpResponse(
        json.dumps(problem, cls=encoder),
        status=problem["status"],
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _conflict_error(error: RecordModifiedError, *, from_if_match: bool) -> PreconditionError:
    """Turn a refused write into the HTTP error to answer with.

    A write whose version came from If-Match fails its precondition (412);
    any other refused write is a conflict (409). A deleted row has no current
    representation, so it fails any precondition (412).
    """
    if isinstance(error, RecordDeletedError):
        return PreconditionFailed(
            "The record has been deleted by someone else.",
            instance=error.target,
            kind="deleted",
            version=None,
        )
    detail = (
        f"The record has been changed by someone else: you sent version {error.version}, "
        f"it is now at version {error.db_version}. Fetch it again and reapply your change."
    )
    if from_if_match:
        return PreconditionFailed(detail, instance=error.target, version=error.db_version)
    return PreconditionError(
        detail, instance=error.target, status=409, title="Conflict", kind="stale", version=error.db_version
    )


# -- evaluation ---------------------------------------------------------------


class _Preconditions:
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
            using = router.db_for_write(type(instance), instance=instance)
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
        tags = _parse_entity_tags(value)
        if tags is None:
            # "*": any current representation (RFC 9110 §13.1.1). The row
            # exists, so the write goes on, still conditional on the version
            # loaded in this request.
            self.star = True
            return
        attname = get_version_fieldname(instance)
        current = getattr(instance, attname)
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
        tags = _parse_entity_tags(value)
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
            return _conflict_error(error, from_if_match=self.from_if_match).response()
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


_REQUEST_ATTR = "_concurrency_preconditions"


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
    state = getattr(request, _REQUEST_ATTR, None)
    if state is None:
        raise ImproperlyConfigured(
            "apply_preconditions() needs a view decorated with @preconditions or using PreconditionMixin."
        )
    return state.apply(instance)


def _start(
    request: HttpRequest, require_if_match: bool | None, write_methods: Iterable[str]
) -> _Preconditions:
    state = _Preconditions(
        request.method or "GET",
        request.headers,
        require_if_match=require_if_match,
        write_methods=write_methods,
    )
    setattr(request, _REQUEST_ATTR, state)
    return state


def _run(state: _Preconditions, call: Callable[[], HttpResponseBase]) -> HttpResponseBase:
    try:
        response = call()
    except (PreconditionError, RecordModifiedError) as error:
        handled = state.handle(error)
        if handled is None:
            raise
        return handled
    return state.finish(response)


async def _arun(state: _Preconditions, call: Callable[[], Awaitable[HttpResponseBase]]) -> HttpResponseBase:
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
                state = _start(request, require_if_match, methods)
                return await _arun(state, lambda: func(request, *args, **kwargs))

            return async_view  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            state = _start(request, require_if_match, methods)
            return _run(state, lambda: func(request, *args, **kwargs))

        return sync_view  # type: ignore[return-value]

    if view is not None:
        return decorate(view)
    return decorate


class PreconditionMixin:
    """Preconditions for a class-based view; put it before ``View`` in the bases.

    ``get_object()`` results have the preconditions applied; other views call
    ``apply_preconditions(self.request, obj)`` themselves. Async views work.
    """

    require_if_match: bool | None = None
    write_methods: Iterable[str] = WRITE_METHODS

    view_is_async: bool
    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        state = _start(request, self.require_if_match, self.write_methods)
        parent = super().dispatch  # type: ignore[misc]
        if self.view_is_async:
            return _arun(state, lambda: parent(request, *args, **kwargs))
        return _run(state, lambda: parent(request, *args, **kwargs))

    def get_object(self, queryset: Any = None) -> Any:
        obj = super().get_object(queryset)  # type: ignore[misc]
        return apply_preconditions(self.request, obj)
