"""The answer to a stopped or refused request: RFC 9457 problem details.

The one place that words and shapes a refused write for HTTP clients, whether
it came through a plain view, the REST framework mixins or django-ninja.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from django.http import HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.utils.translation import gettext

from ..exceptions import RecordDeletedError, RecordModifiedError
from .etags import make_etag

if TYPE_CHECKING:
    from django.db.models import Model

PROBLEM_CONTENT_TYPE = "application/problem+json"
# RFC 9457 problem types. Tag URIs (RFC 4151) identify without being fetched.
PROBLEM_TYPES = {
    "invalid": "tag:django-optimistic-concurrency,2026:invalid-precondition",
    "stale": "tag:django-optimistic-concurrency,2026:stale-version",
    "deleted": "tag:django-optimistic-concurrency,2026:deleted",
    "required": "tag:django-optimistic-concurrency,2026:precondition-required",
}


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
        answer["Content-Length"] = str(len(cast(HttpResponse, response).content))
    return answer


def problem_response(problem: dict[str, Any], encoder: type[json.JSONEncoder] | None = None) -> HttpResponse:
    """Return an ``application/problem+json`` response (RFC 9457) with ``problem`` as its body."""
    return HttpResponse(
        json.dumps(problem, cls=encoder),
        status=problem["status"],
        content_type=PROBLEM_CONTENT_TYPE,
    )


def deleted_error(instance: Model | None = None) -> PreconditionFailed:
    """Return the error for a write to a row that is gone (412: no current representation)."""
    return PreconditionFailed(
        gettext("The record has been deleted by someone else."),
        instance=instance,
        kind="deleted",
        version=None,
    )


def stale_detail(sent: Any, current: Any) -> str:
    """Return the words for a write refused because the row moved on from version ``sent``."""
    return gettext(
        "The record has been changed by someone else: you sent version %(sent)s, "
        "it is now at version %(current)s. Fetch it again and reapply your change."
    ) % {"sent": sent, "current": current}


def conflict_error(error: RecordModifiedError, *, from_if_match: bool) -> PreconditionError:
    """Turn a refused write into the HTTP error to answer with.

    A write whose version came from If-Match fails its precondition (412);
    any other refused write is a conflict (409). A deleted row has no current
    representation, so it fails any precondition (412).
    """
    if isinstance(error, RecordDeletedError):
        return deleted_error(error.target)
    detail = stale_detail(error.version, error.db_version)
    if from_if_match:
        return PreconditionFailed(detail, instance=error.target, version=error.db_version)
    return PreconditionError(
        detail, instance=error.target, status=409, title="Conflict", kind="stale", version=error.db_version
    )
