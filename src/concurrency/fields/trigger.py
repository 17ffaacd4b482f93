"""``TriggerVersionField``: a version a database trigger keeps."""

from __future__ import annotations

import functools
from typing import Any

from django.db import models
from django.db.models.expressions import Expression

from ..core.hooks import wrap_once
from ..triggers import get_trigger_name, is_default_factory
from .base import VersionField


class TriggerVersionField(VersionField):
    """A version kept by a database trigger, so writes made outside Django bump it too.

    ``QuerySet.update()``, raw SQL and other programs all move the version,
    which makes instances loaded before such a write fail to save. A save
    writes ``version = version + 1`` itself (the trigger stands aside when an
    UPDATE raises the version) and the instance gets the stored version back
    from the database. The triggers are created by the ``CreateTrigger``
    migration operation, after ``migrate`` (``CONCURRENCY_AUTO_CREATE_TRIGGERS``)
    or by ``manage.py triggers create``.
    """

    version_from_db = True
    #: Looked for by ``concurrency.triggers`` and ``CreateTrigger``.
    needs_trigger = True

    def __init__(self, *args: Any, trigger_name: str | None = None, **kwargs: Any) -> None:
        self._trigger_name = trigger_name
        super().__init__(*args, **kwargs)

    @property
    def trigger_name(self) -> str:
        """Return the name of the trigger in the database (always ``concurrency_...``)."""
        return get_trigger_name(self)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self._trigger_name:
            kwargs["trigger_name"] = self._trigger_name
        return name, path, args, kwargs

    def update_version(
        self, instance: models.Model, old: Any, values: list[tuple[Any, Any, Any]], incremented: bool
    ) -> Any:
        # Increment switches do not apply: the trigger would bump anyway, and
        # on SQLite (whose triggers run after RETURNING is computed) the
        # statement must make the bump itself for the value returned to be
        # the one stored.
        return _Increment(self)

    def stored_version(self, connection: Any, old: Any, new: Any) -> Any:
        # The library's own triggers keep a version the statement raised, so
        # version + 1 over a row matched at ``old`` stores old + 1. A trigger
        # of a project's own factory may store anything: read it back.
        if (
            isinstance(new, _Increment)
            and isinstance(old, int)
            and not isinstance(old, bool)
            and is_default_factory(connection)
        ):
            return old + 1
        return None

    def prepare_model(self, model: type[models.Model]) -> None:
        """Let the versioned ``model``'s ``save()`` take django-concurrency's ``refetch``."""
        _accept_refetch(model)

    def returns_stored(self, connection: Any) -> bool:
        # Another trigger may change the row after RETURNING or
        # LAST_INSERT_ID() took the statement's value (SQLite's AFTER
        # triggers, MySQL's BEFORE triggers).
        return is_default_factory(connection)


class _Increment(Expression):
    """``<version column> + 1``, ready to compile: nothing to resolve on the hot path."""

    def __init__(self, field: models.Field) -> None:
        super().__init__(output_field=field)
        self.version_field = field

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _Increment:
        return self

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return f"{connection.ops.quote_name(self.version_field.column)} + 1", []


def _accept_refetch(model: Any) -> None:
    """Let ``save()`` take django-concurrency's ``refetch`` keyword (models with a TriggerVersionField).

    django-concurrency assumed its trigger added one, and offered
    ``save(refetch=True)`` to read the stored version instead. Here the save
    always reads the stored version back in the UPDATE itself, so the keyword
    costs nothing; with it, ``save()`` returns the instance, as
    django-concurrency returned its refetched copy. The model's own ``save()``
    (or the one it inherits) is wrapped once per class that defines one.
    """
    wrap_once(model, "save", "refetch", _accepting_refetch)


def _accepting_refetch(save: Any) -> Any:
    @functools.wraps(save)
    def save_accepting_refetch(self: Any, *args: Any, refetch: bool = False, **kwargs: Any) -> Any:
        save(self, *args, **kwargs)
        return self if refetch else None

    return save_accepting_refetch
