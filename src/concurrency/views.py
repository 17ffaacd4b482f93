"""Views and callbacks for refused writes."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from django.db import connections, models
from django.http import HttpRequest, HttpResponse
from django.template import TemplateDoesNotExist, loader

from .core.options import options_of
from .core.versions import database_of
from .exceptions import RecordModifiedError

__all__ = ["ConflictResponse", "callback", "conflict", "submitted_fields"]

DEFAULT_TEMPLATE = "concurrency/409.html"


class ConflictResponse(HttpResponse):
    """An HTTP 409 Conflict response."""

    status_code = 409


def callback(target: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``RecordModifiedError`` for ``target`` (the default ``CONCURRENCY_CALLBACK``)."""
    raise RecordModifiedError(target=target)


_UNKNOWN = object()


def _current_row(target: Any) -> Any:
    """Return the row of ``target`` as the database holds it now, ``None`` if it is gone.

    Return ``_UNKNOWN`` when the database cannot be asked: inside an atomic
    block that the refused save has marked for rollback.
    """
    if not isinstance(target, models.Model) or target.pk is None:
        return None
    model = type(target)
    # The database the refused write went to: a replica may not have the winner yet.
    using = database_of(target)
    if connections[using].needs_rollback:
        return _UNKNOWN
    return model._base_manager.using(using).filter(pk=target.pk).first()


def submitted_fields(request: HttpRequest) -> set[str]:
    """Return the names the request submitted as form data (``POST`` and ``FILES`` keys).

    The default 409 page compares only the model fields among these: the
    fields the refused write was about, as the requester sent them.
    """
    return set(request.POST) | set(request.FILES)


def _compared(model: type[models.Model], fields: Iterable[str] | None) -> list[models.Field]:
    """Return the editable concrete fields of ``model`` among ``fields`` (all of them for ``None``)."""
    meta = options_of(model)
    version_field = meta.field if meta is not None else None
    wanted = None if fields is None else set(fields)
    return [
        field
        for field in model._meta.concrete_fields
        if field.editable
        and not field.primary_key
        and field is not version_field
        and (wanted is None or field.name in wanted or field.attname in wanted)
    ]


def _name(saved: models.Model | None, attempted: Any, fields: Iterable[str] | None) -> str | None:
    """Name the record without the values the request sent: those are the user's, not the record's.

    The fields the request sent are taken from ``saved`` (the row as stored
    now); the others are the view's own copy. ``None`` when the record cannot
    be named that way (it is gone, or the database cannot be asked).
    """
    if not isinstance(attempted, models.Model):
        return None
    sent = _compared(type(attempted), fields)
    if not sent:
        return str(attempted)
    if saved is None:
        return None
    named = copy.copy(attempted)
    for field in sent:
        setattr(named, field.attname, getattr(saved, field.attname))
    return str(named)


def _differences(
    saved: models.Model | None, attempted: Any, fields: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """List the editable fields, among ``fields``, whose value differs between the two versions of a row."""
    if saved is None or not isinstance(attempted, models.Model):
        return []
    rows = []
    for field in _compared(type(attempted), fields):
        mine, theirs = field.value_from_object(attempted), field.value_from_object(saved)
        if mine != theirs:
            rows.append({"name": field.name, "label": field.verbose_name, "saved": theirs, "attempted": mine})
    return rows


def conflict(
    request: HttpRequest,
    target: Any = None,
    template_name: str = "409.html",
    *,
    fields: Iterable[str] | None = None,
) -> ConflictResponse:
    """Render the 409 page for a refused write of ``target`` (the default ``CONCURRENCY_HANDLER409``).

    The template gets the request (context processors, CSRF token) and
    ``target``/``attempted`` (what the user tried to save), ``saved`` (the row
    as it is now, ``None`` if it was deleted or cannot be read because the
    transaction is broken), ``deleted``, ``differences``, ``request_path``
    and ``name``: the record's name with the values the request sent replaced
    by the stored ones (``str(target)`` would name it by what the user typed),
    or ``None`` when it cannot be named so.
    Without a ``template_name`` in the project, ``concurrency/409.html`` is used.

    ``differences`` lists the fields that differ between the two among
    ``fields``; by default, the model fields the request submitted
    (:func:`submitted_fields`), so the page never shows a column the
    requester did not send. A project that may show more passes ``fields``
    from a handler of its own.
    """
    try:
        template = loader.get_template(template_name)
    except TemplateDoesNotExist:
        template = loader.get_template(DEFAULT_TEMPLATE)
    saved = _current_row(target)
    deleted = target is not None and saved is None
    if saved is _UNKNOWN:
        saved = None
    compared = submitted_fields(request) if fields is None else list(fields)
    context = {
        "target": target,
        "attempted": target,
        "saved": saved,
        "deleted": deleted,
        "differences": _differences(saved, target, compared),
        "request_path": request.path,
        "name": _name(saved, target, compared),
    }
    return ConflictResponse(template.render(context, request))
