"""The row an instance was loaded with.

A ConditionalVersionField decides in the client whether a save bumps the
version, from the values its instance was loaded with (``update_version``).
That is exact because a write checked with ``WHERE version = <old>`` can only
match the row as it was at that version: every other write that changes a
checked field moves the version (a save, VersionedQuerySet.update(),
bulk_update(), the many-to-many touch, the unchecked writes of
disable_concurrency(), which compare with the row in SQL). Writes that change
checked fields without moving the version (concurrency_disable_increment(),
a plain QuerySet.update(), raw SQL) are outside that promise, as they are
for the version check itself (docs/guide/conditional.rst).

``from_db`` keeps a reference to the values the instance was built from, not
a copy, on its ``_state``. The row is trusted only while the instance holds
the version it was loaded (or last saved by ``save_update``) at: assigning
another version (fields.py, _VersionAttribute), a rolled-back write and every
other write forget it, and an instance without it (created, deferred fields,
unpickled) is compared in SQL.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db.models import Model

from .hooks import wrap_once
from .options import version_field

ROW = "_concurrency_loaded_row"
# Types whose equality in Python is equality of what the database stores, and
# whose values cannot change in place: a loaded value of one of them stands for
# the row's (text compares code point for code point, as the SQL compares
# bytes). Anything else (JSON containers, memoryview, FieldFile, enum members,
# str subclasses, expressions) is compared by the database.
IMMUTABLE_TYPES = frozenset(
    {
        type(None),
        str,
        int,
        bool,
        float,
        Decimal,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        bytes,
    }
)
# model -> {attname: position of its value in the row ``from_db`` was given}
_positions: dict[type[Model], dict[str, int]] = {}
_layouts: dict[type[Model], tuple[int, int]] = {}


class _Row(tuple):
    """The values a loaded instance was built from, by concrete field; never pickled."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # A memoryview does not pickle, and an unpickled copy may outlive the
        # version it was loaded at: the copy compares in SQL.
        return (_no_row, ())

    def __copy__(self) -> _Row:
        return self

    def __deepcopy__(self, memo: Any) -> _Row:
        return self


def _no_row() -> None:
    return None


def keep_loaded_rows(model: Any) -> None:
    """Make ``model.from_db`` keep the row each instance is built from (see ``loaded_row``)."""
    wrap_once(model, "from_db", "rows", _keeping_rows)


def _keeping_rows(from_db: Any) -> Any:
    build = from_db.__func__

    # Keyword arguments pass through: Django 6.1 gives ``fetch_mode`` to a from_db() that takes it.
    def from_db_keeping_row(cls: Any, db: str, field_names: Any, values: Sequence[Any], **kwargs: Any) -> Any:
        instance = build(cls, db, field_names, values, **kwargs)
        # With deferred fields the row is shorter than the model's: never trusted (loaded_row).
        instance._state.__dict__[ROW] = _Row(values)
        return instance

    return classmethod(from_db_keeping_row)


def row_positions(model: type[Model]) -> dict[str, int]:
    """Return the position of each concrete field's value (by attname) in a row ``model`` keeps."""
    try:
        return _positions[model]
    except KeyError:
        positions = {f.attname: i for i, f in enumerate(model._meta.concrete_fields)}
        _positions[model] = positions
        # The version's position, and the length of a row loaded without deferred fields.
        _layouts[model] = positions[version_field(model).attname], len(positions)
        return positions


def loaded_row(instance: Model, version: Any) -> Sequence[Any] | None:
    """Return the row ``instance`` was loaded with, if it holds it at ``version`` (see ``row_positions``)."""
    state = instance._state.__dict__
    row = state.get(ROW)
    if row is None:
        return None
    if type(row) is _Followed:
        row = _apply(instance, row)
        if row is None:
            del state[ROW]
            return None
        state[ROW] = row
    return _at(type(instance), row, version)


def _at(model: type[Model], row: Any, version: Any) -> Sequence[Any] | None:
    """Return ``row`` if it is a whole row of ``model`` at ``version``."""
    layout = _layouts.get(model)
    if layout is None:
        row_positions(model)
        layout = _layouts[model]
    # Shorter when loaded with deferred fields: never trusted.
    if len(row) != layout[1] or row[layout[0]] != version:
        return None
    return row


class _Followed(tuple):
    """``(row, old, written, new)``: a save wrote ``written`` over ``row`` at ``old``.

    Applied when next asked for (``loaded_row``).
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_no_row, ())

    def __copy__(self) -> _Followed:
        return self

    def __deepcopy__(self, memo: Any) -> _Followed:
        return self


def _apply(instance: Model, followed: _Followed) -> _Row | None:
    """Return the row ``followed`` describes, or None if only the database knows it."""
    previous, old, written, new = followed
    if type(previous) is _Followed:
        previous = _apply(instance, previous)
    model = type(instance)
    if previous is None or _at(model, previous, old) is None:
        return None
    positions = _positions[model]
    row = list(previous)
    for field, _model, value in written:
        if type(value) not in IMMUTABLE_TYPES and hasattr(value, "resolve_expression"):
            return None  # only the database knows what it stored
        row[positions[field.attname]] = value
    row[_layouts[model][0]] = new
    return _Row(row)


def forget_loaded_row(instance: Model) -> None:
    """Drop the row ``instance`` was loaded with: it may no longer be the row at its version."""
    instance._state.__dict__.pop(ROW, None)


def follow_row(instance: Model, old: Any, new: Any, written: list[tuple[Any, Any, Any]] | None) -> None:
    """After a write of ``instance`` from ``old`` to ``new``, keep the row it holds at ``new``, or forget it.

    ``written`` are the values of a checked, incremented save. The row is
    worked out when next asked for (``loaded_row``): most instances are not
    saved twice.
    """
    state = instance._state.__dict__
    row = state.get(ROW)
    if row is None:
        return
    if written is None:
        del state[ROW]
    elif new != old:
        state[ROW] = _Followed((row, old, written, new))
    # else nothing checked changed: the row is the one loaded (unchecked fields are never compared).
