"""A row's version: the values a version column can hold, and reading what it holds now.

The one place that asks the database for a row's current version, and the one
policy for which database to ask: the database the row is written to
(``router.db_for_write`` with the instance), never a replica that may lag.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import router
from django.db.models import F, Value
from django.db.models.functions import Greatest

from .options import version_field

# A version is a 64-bit column: one that it cannot hold, or whose successor it
# cannot hold, matches no row, whatever reached the instance (a form, a body).
MIN_VERSION = -(2**63)
MAX_VERSION = 2**63 - 2
VERSION_RANGE = range(MIN_VERSION, MAX_VERSION + 1)


def storable(version: Any) -> bool:
    """Return whether ``version`` and its successor fit the version column (or it is NULL)."""
    if version is None:
        return True
    try:
        return int(version) in VERSION_RANGE
    except (TypeError, ValueError, OverflowError):
        return False


def past_stored(field: Any, new: Any) -> Any:
    """Return SQL for a version past both ``new`` and whatever the row holds (an unchecked write).

    The row may be ahead of the instance written, and its version must still move.
    """
    return Greatest(F(field.attname) + 1, Value(new))


def database_of(instance: Any) -> str:
    """Return the alias a write of ``instance`` goes to, which is where its version is read."""
    return router.db_for_write(type(instance), instance=instance)


def current_version(instance: Any, using: str | None = None) -> list[Any]:
    """Return ``[version]`` of the row of ``instance`` as the database holds it now, ``[]`` if it is gone."""
    field = version_field(instance)
    rows = field.model._base_manager.using(using or database_of(instance)).filter(pk=instance.pk)
    return list(rows.values_list(field.attname, flat=True)[:1])


def current_versions(
    model: Any, pks: Iterable[Any], using: str, *, lock: bool = False, queryset: Any = None
) -> dict[Any, Any]:
    """Return the current versions of the rows ``pks`` of ``model`` by pk (gone rows are missing).

    ``queryset`` narrows the rows to those it matches; ``lock`` reads them with
    ``SELECT … FOR UPDATE``.
    """
    field = version_field(model)
    rows = queryset if queryset is not None else field.model._base_manager.using(using)
    rows = rows.filter(pk__in=list(pks)).order_by()
    if lock:
        rows = rows.select_for_update()
    return dict(rows.values_list("pk", field.attname))
