"""Exceptions raised when a versioned write is refused."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import SuspiciousOperation, ValidationError
from django.db import DatabaseError
from django.utils.translation import gettext_lazy as _

from .compat import ObjectNotUpdated

__all__ = [
    "BulkUpdateConflictError",
    "InconsistencyError",
    "RecordDeletedError",
    "RecordModifiedError",
    "VersionChangedError",
    "VersionError",
    "VersionNotLoadedError",
    "WriteConflictError",
]


class RecordModifiedError(DatabaseError):
    """A versioned write found a different version in the database.

    ``target`` is the instance whose save or delete was refused; it still
    holds the version it had before the attempt. ``model``, ``pk`` and
    ``version`` describe what the caller had; ``db_version`` is the version
    found in the database when it was cheap to learn (``None`` otherwise).
    """

    default_message = _("Record has been modified")
    #: The message of a write refused while ``concurrency_disable_increment``
    #: covered the instance (django-concurrency skipped the check there).
    increment_disabled_message = _(
        "Record has been modified (concurrency_disable_increment() disables version increments, "
        "not version checks; use disable_concurrency() to skip the check)"
    )

    def __init__(
        self,
        *args: Any,
        target: Any = None,
        version: Any = None,
        db_version: Any = None,
    ) -> None:
        super().__init__(*(args or (self.default_message,)))
        self.target = target
        self.model = type(target) if target is not None else None
        self.pk = getattr(target, "pk", None)
        self.version = version
        self.db_version = db_version

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else str(self.default_message)


class RecordDeletedError(RecordModifiedError, ObjectNotUpdated):
    """A versioned write found that someone else deleted the row.

    Raised instead of silently inserting the stale data again. On Django 6.0
    and later it is also an ``ObjectNotUpdated`` ("the updated object no
    longer exists"), the base of every ``Model.NotUpdated``.
    """

    default_message = _("Record has been deleted")


class BulkUpdateConflictError(RecordModifiedError):
    """A versioned ``bulk_update()`` found stale rows and wrote nothing.

    ``conflicts`` lists every refused row as ``(instance, version,
    db_version, deleted)``, across all batches; ``objects`` lists just the
    stale instances, in the order they were passed. ``target`` is ``None``:
    no single instance was refused.
    """

    default_message = _("Records have been modified")

    def __init__(self, *args: Any, model: Any = None, conflicts: Any = ()) -> None:
        super().__init__(*args)
        self.model = model
        self.conflicts = list(conflicts)
        self.objects = [conflict.instance for conflict in self.conflicts]

    def __str__(self) -> str:
        return f"{super().__str__()}: {', '.join(str(obj.pk) for obj in self.objects)}"


class WriteConflictError(RecordModifiedError):
    """The database rolled the transaction back for a concurrent write of the same rows.

    A Galera certification failure (MariaDB/MySQL error 1213, at a statement
    or at ``COMMIT``), an InnoDB deadlock (1213) or a PostgreSQL serialization
    failure or deadlock (40001, 40P01), seen by ``concurrency.transaction.atomic``
    and so by ``retry_on_conflict``. Nothing of the transaction was written.
    The database does not say which row lost: ``target`` is the first
    versioned instance saved in the transaction (``None`` if there was none),
    ``version`` the version it was saved from, ``db_version`` the version the
    row holds now; ``objects`` lists every versioned instance saved in it.
    """

    default_message = _("The transaction was rolled back: a concurrent transaction wrote the same rows")

    def __init__(self, *args: Any, objects: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.objects = list(objects)


class VersionError(SuspiciousOperation):
    """A submitted version is missing, malformed or has been tampered with."""

    def __init__(
        self,
        message: Any = None,
        code: str | None = None,
        params: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.message = message or _("Version number is missing or has been tampered with")
        self.code = code
        self.params = params
        super().__init__(self.message)


class VersionNotLoadedError(ValueError):
    """A checked write of an instance whose version was never loaded (``only()``/``defer()``).

    Loading the version at save time would compare the write with a row the
    user never saw, so the write is refused instead.
    """

    def __init__(self, instance: Any, field_name: str = "version") -> None:
        self.target = instance
        opts = type(instance)._meta
        name = field_name
        super().__init__(
            f"{opts.label} pk={instance.pk!r} was loaded without its version field {name!r} "
            f"(only()/defer()), so a write cannot be checked against the version that was read. "
            f"Load it with the row: add {name!r} to only(), leave it out of defer(), or use "
            f"VersionedManager, whose only()/defer() always load it."
        )


class VersionChangedError(ValidationError):
    """A form's version no longer matches the database (a validation error)."""


class InconsistencyError(DatabaseError):
    """Kept for imports written against old releases; never raised."""
