"""Refusing upserts of versioned rows.

Upserts. bulk_create(update_conflicts=True) overwrites existing rows without
checking or moving their version, whatever manager it is called through, so
instances loaded before it could later save over it unseen. Every INSERT is
compiled through the backend's on_conflict_suffix_sql(), with the inserted
fields: one versioned field there refuses the upsert before anything is sent.
(VersionedQuerySet.bulk_create() refuses it earlier, with the same message.)
"""

from __future__ import annotations

from typing import Any

from django.db import NotSupportedError, connections
from django.db.backends.signals import connection_created
from django.db.models.constants import OnConflict

from .options import declared_options


def upsert_refusal(model: Any) -> NotSupportedError:
    """Return the error for an upsert of rows of a versioned ``model``."""
    return NotSupportedError(
        f"bulk_create(update_conflicts=True) would overwrite rows of {model._meta.label} "
        "without checking or bumping their version, so older instances could save over it. "
        "Create new rows with bulk_create() and update existing ones with bulk_update(), which checks them."
    )


def _guard_upserts(connection: Any, **kwargs: Any) -> None:
    ops = connection.ops
    if getattr(ops, "_concurrency_guarded", False):
        return
    suffix = ops.on_conflict_suffix_sql

    def on_conflict_suffix_sql(fields: Any, on_conflict: Any, *args: Any, **kw: Any) -> Any:
        if on_conflict is OnConflict.UPDATE:
            for field in fields:
                own = declared_options(field.model)
                if own is not None and field is own.field:
                    raise upsert_refusal(field.model)
        return suffix(fields, on_conflict, *args, **kw)

    ops.on_conflict_suffix_sql = on_conflict_suffix_sql
    ops._concurrency_guarded = True


def _guard_all_upserts(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    _guard_upserts(connection)


connection_created.connect(_guard_all_upserts, dispatch_uid="concurrency.guard_upserts")
for _connection in connections.all(initialized_only=True):
    _guard_upserts(_connection)
