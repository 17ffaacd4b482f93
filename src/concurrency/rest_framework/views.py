"""Generic view and viewset mixin: ETag, If-Match, 412/428 and problem details."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model
from django.http import Http404, HttpResponse, HttpResponseBase
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.utils.encoders import JSONEncoder

from .._bases import APIViewBase
from ..core.options import version_of
from ..core.versions import database_of
from ..exceptions import RecordModifiedError
from ..http import (
    WRITE_METHODS,
    PreconditionError,
    PreconditionRequired,
    make_etag,
    problem_response,
)
from ..http.preconditions import Preconditions
from ..http.problems import conflict_error, deleted_error
from .serializers import VERSION_CONTEXT_KEY, VersionConflict

__all__ = ["VersionedViewMixin"]


def _savepoint(using: str) -> AbstractContextManager[Any]:
    """Return a savepoint inside a transaction (ATOMIC_REQUESTS), else nothing.

    A refused write marks the surrounding transaction for rollback; the
    savepoint keeps it usable for reading the current row into the answer.
    In autocommit mode there is nothing to protect, and no query is spent.
    """
    if transaction.get_connection(using).in_atomic_block:
        return transaction.atomic(using=using)
    return nullcontext()


class VersionedViewMixin(APIViewBase):
    """Mix into a ``GenericAPIView`` or ``GenericViewSet`` of a versioned model.

    - ``retrieve`` (GET/HEAD) answers with the row's ETag, and 304 for a
      matching If-None-Match.
    - ``update``/``partial_update`` (PUT/PATCH) save with the version named by
      If-Match, or, when ``require_if_match`` is off and the header is absent,
      with the version in the body (see ``VersionedSerializerMixin``). A stale
      If-Match is 412, a stale body version 409, a missing If-Match 428.
    - ``destroy`` (DELETE) deletes with the If-Match version; it has no body to
      carry one, so it needs If-Match even when ``require_if_match`` is off.

    Errors are ``application/problem+json`` (RFC 9457); a 409 or 412 carries
    the current representation (``current``), ``version`` and ``etag`` when
    the requester may read the row as it is now: it is read again through the
    view's ``filter_queryset(get_queryset())`` and passes
    ``check_object_permissions``, and is shown through the view's serializer.
    A row that left the queryset answers as a deleted one (412, no version); a
    row the permissions now refuse answers what a GET would (403 or 404).
    """

    require_if_match: bool | None = None
    write_methods: Iterable[str] = WRITE_METHODS

    _preconditions: Preconditions | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # After authentication and permissions: preconditions never answer for
        # a request that would fail for another reason (RFC 9110 §13.2.1).
        self._preconditions = Preconditions(
            request.method or "GET",
            request.headers,
            require_if_match=self.require_if_match,
            write_methods=self.write_methods,
        )

    def get_object(self) -> Any:
        obj = super().get_object()
        if self._preconditions is not None:
            self._preconditions.apply(obj)
        return obj

    def get_serializer_context(self) -> dict[str, Any]:
        context: dict[str, Any] = super().get_serializer_context()
        state = self._preconditions
        if state is not None and state.is_write and state.instance is not None:
            if state.from_if_match:
                context[VERSION_CONTEXT_KEY] = state.version
            elif state.star:
                # "If-Match: *" accepts the row as this request loaded it.
                context[VERSION_CONTEXT_KEY] = version_of(state.instance)
        return context

    def perform_update(self, serializer: Any) -> None:
        with _savepoint(database_of(serializer.instance)):
            super().perform_update(serializer)

    def perform_destroy(self, instance: Model) -> None:
        state = self._preconditions
        if state is not None and not (state.from_if_match or state.star):
            raise PreconditionRequired(
                "Deleting needs an If-Match header with the ETag you read.", instance=instance
            )
        with _savepoint(database_of(instance)):
            deleted, _rows = instance.delete()
        if not deleted:
            raise deleted_error(instance)

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        state = self._preconditions
        error: Exception = exc.error if isinstance(exc, VersionConflict) else exc
        if state is not None and isinstance(error, RecordModifiedError) and state.concerns(error):
            return self.precondition_response(
                conflict_error(error, from_if_match=state.from_if_match), reload=True
            )
        if isinstance(error, PreconditionError):
            return self.precondition_response(error, reload=False)
        return super().handle_exception(exc)

    def precondition_response(self, error: PreconditionError, *, reload: bool) -> HttpResponse:
        """Return the response for ``error``, with the current row when it is a 409 or 412.

        ``reload`` reads the row again (after a refused write); otherwise the
        instance loaded by this request is current.
        """
        if error.status not in (409, 412) or error.instance is None:
            return error.response()
        if error.kind == "deleted":
            return self._gone_response()
        if not reload:
            # Loaded by get_object() in this request: the view's queryset and
            # object permissions have passed for the row as it is.
            current: Model | None = error.instance
        else:
            current = self._current(error.instance)
            if current is None:
                # Deleted, or no longer in this view's queryset for this user:
                # one answer for both, so the answer tells nothing about a
                # row the requester can no longer read.
                return self._gone_response()
            try:
                self.check_object_permissions(self.request, current)
            except (APIException, Http404, PermissionDenied) as denied:
                # What a GET of the row would get now (403 or 404), not its version.
                return super().handle_exception(denied)
        assert current is not None
        problem = error.problem()
        problem["version"] = version_of(current)
        problem["etag"] = make_etag(current)
        problem["current"] = self.get_serializer(current).data
        return problem_response(problem, encoder=JSONEncoder)

    def _gone_response(self) -> HttpResponse:
        gone = deleted_error()
        problem = gone.problem()
        problem.update(etag=None, current=None)
        return problem_response(problem, encoder=JSONEncoder)

    def _current(self, instance: Model) -> Model | None:
        """Read the row again through the view's own queryset and filters, as ``get_object()`` does."""
        queryset = self.filter_queryset(self.get_queryset())
        return queryset.filter(pk=instance.pk).first()

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self._preconditions is not None:
            response = self._preconditions.finish(response)
        return response
