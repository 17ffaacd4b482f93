"""The vendor-neutral part of the trigger SQL: names, rendering, listing."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["PREFIX", "BaseTriggerFactory", "get_trigger_name"]


class TriggeredField(Protocol):
    """What the trigger SQL needs of a ``concurrency.fields.TriggerVersionField``."""

    model: Any
    name: str
    column: str | None
    _trigger_name: str | None


PREFIX = "concurrency_"
# The shortest identifier limit of the supported servers: PostgreSQL keeps 63
# bytes (MySQL allows 64 characters). Names are capped the same everywhere so a
# trigger keeps its name when a project changes database.
MAX_NAME_LENGTH = 63
_HASH_LENGTH = 8


def get_trigger_name(field: TriggeredField) -> str:
    """Return the trigger's name: ``concurrency_`` + ``trigger_name`` or ``<table>_<column>``.

    Names longer than 63 bytes keep their beginning and end with a hash of the
    full name, the way Django shortens index names, so they stay unique and
    the same on every run.
    """
    base = field._trigger_name or f"{field.model._meta.db_table}_{field.column}"
    name = base if base.startswith(PREFIX) else PREFIX + base
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.md5(encoded, usedforsecurity=False).hexdigest()[:_HASH_LENGTH]
    head = encoded[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].decode(errors="ignore")
    return f"{head}_{digest}"


class BaseTriggerFactory:
    """Render and run the SQL that keeps a ``TriggerVersionField`` up to date.

    Subclasses, one per ``connection.vendor``, fill in the ``sql_*`` templates.
    The trigger gives every UPDATE of the row a higher version: ``OLD + 1``
    unless the statement itself wrote a higher one (which is what a save
    does, so that the value it reads back is the one stored). Placeholders:
    ``{name}`` the trigger, ``{function}`` a trigger function where the
    database needs one, ``{table}``, ``{column}``, ``{pk}``, all quoted.
    """

    #: Statements that create the trigger; run after ``sql_drop``.
    sql_create: tuple[str, ...] = ()
    #: Statements that remove the trigger and anything created with it; each
    #: must succeed when there is nothing to remove.
    sql_drop: tuple[str, ...] = ()
    #: A query whose first column is the name of every trigger of the current schema.
    sql_list: str = ""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def params(self, field: TriggeredField) -> dict[str, str]:
        """Return the quoted identifiers the templates are filled with."""
        qn = self.connection.ops.quote_name
        opts = field.model._meta
        name = get_trigger_name(field)
        return {
            "name": qn(name),
            "function": qn(name),
            "table": qn(opts.db_table),
            "column": qn(str(field.column)),
            "pk": qn(str(opts.pk.column)),
        }

    def create_sql(self, field: TriggeredField) -> list[str]:
        """Return the statements that (re)create the trigger of ``field``."""
        params = self.params(field)
        return [sql.format(**params) for sql in (*self.sql_drop, *self.sql_create)]

    def drop_sql(self, field: TriggeredField) -> list[str]:
        """Return the statements that remove the trigger of ``field``."""
        params = self.params(field)
        return [sql.format(**params) for sql in self.sql_drop]

    def names(self) -> list[str]:
        """Return the names of this library's triggers in the database, sorted."""
        with self.connection.cursor() as cursor:
            cursor.execute(self.sql_list)
            names = [row[0] for row in cursor.fetchall()]
        return sorted(name for name in names if name.startswith(PREFIX))

    def exists(self, field: TriggeredField) -> bool:
        """Return whether the trigger of ``field`` is in the database."""
        return get_trigger_name(field) in self.names()

    def create(self, field: TriggeredField, *, replace: bool = False) -> bool:
        """Create the trigger of ``field``; return False if it existed (and was left alone)."""
        if not replace and self.exists(field):
            return False
        self._run(self.create_sql(field))
        return True

    def drop(self, field: TriggeredField) -> bool:
        """Remove the trigger of ``field``; return whether it existed."""
        existed = self.exists(field)
        self._run(self.drop_sql(field))
        return existed

    def _run(self, statements: list[str]) -> None:
        from django.db import transaction

        with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
