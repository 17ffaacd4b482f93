"""``atomic()`` that reports a transaction lost to a concurrent write as a conflict.

On a single server, a versioned save that lost a race matches no row and
raises ``RecordModifiedError``. On a Galera cluster two transactions on two
nodes can both match ``version = old``; the one certified second is rolled
back by the cluster, at ``COMMIT`` or at its next statement, with error 1213.
Use this ``atomic`` for the outermost block of read-modify-write code and that
rollback arrives as ``WriteConflictError``, a ``RecordModifiedError``, so the
same ``except`` (and ``retry_on_conflict``, which uses it) handles both::

    from concurrency.transaction import atomic

    with atomic():
        item = Item.objects.get(pk=pk)
        item.stock += 1
        item.save()

It is Django's ``atomic`` otherwise, decorator form included: one decorated
function may run in many threads at once and call itself. Only the outermost
block can report the rollback: a savepoint cannot outlive its transaction, so
nested blocks let the error through to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db import transaction as django_transaction
from django.db.models.signals import pre_save

from .core.options import options_of
from .core.refusal import announce
from .core.versions import current_version
from .exceptions import WriteConflictError

__all__ = ["atomic", "is_write_conflict"]

F = TypeVar("F", bound=Callable[..., Any])

# The state of this library's ``atomic()`` blocks open on a connection (Django
# gives each thread and task its own), innermost last: for an outermost block,
# the versioned instances saved inside it as (instance, database alias, version
# before the save); None for a nested block. Nothing is kept on the ``Atomic``
# object, which one decorated function shares between threads and recursion.
_BLOCKS = "_concurrency_atomic_blocks"

# MariaDB/MySQL: ER_LOCK_DEADLOCK, what Galera answers for a certification failure.
_MYSQL_CODES = frozenset({1213})
# PostgreSQL: serialization_failure, deadlock_detected.
_POSTGRESQL_STATES = frozenset({"40001", "40P01"})


def is_write_conflict(error: BaseException, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Return whether ``error`` means the database rolled back a transaction for a concurrent write."""
    cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
    vendor = connections[using].vendor
    if vendor == "mysql":
        return bool(cause.args) and cause.args[0] in _MYSQL_CODES
    if vendor == "postgresql":
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        return state in _POSTGRESQL_STATES
    return False


def _note_save(sender: Any, instance: Any, raw: bool = False, using: str = "", **kwargs: Any) -> None:
    blocks = getattr(connections[using], _BLOCKS, None)
    meta = options_of(sender)
    if not blocks or blocks[0] is None or meta is None or raw or instance._state.adding:
        return
    blocks[0].append((instance, using, getattr(instance, meta.field.attname)))


_listening = False


def _listen() -> None:
    global _listening
    # Connected on first use, once: connecting clears the signal's receiver cache.
    pre_save.connect(_note_save, dispatch_uid="concurrency.transaction", weak=False)
    _listening = True


class Atomic(django_transaction.Atomic):
    """Django's ``Atomic``; the outermost block also maps a write-conflict rollback."""

    def __enter__(self) -> None:
        connection = django_transaction.get_connection(self.using)
        outermost = not connection.in_atomic_block
        if outermost and not _listening:
            _listen()
        super().__enter__()
        blocks = connection.__dict__.setdefault(_BLOCKS, [])
        blocks.append([] if outermost else None)

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        saved = getattr(django_transaction.get_connection(self.using), _BLOCKS).pop()
        if saved is None:
            return super().__exit__(exc_type, exc_value, traceback)
        using = self.using or DEFAULT_DB_ALIAS
        try:
            super().__exit__(exc_type, exc_value, traceback)
        except DatabaseError as error:
            # The COMMIT failed.
            if is_write_conflict(error, using):
                raise _conflict(saved, using) from error
            raise
        if isinstance(exc_value, DatabaseError) and is_write_conflict(exc_value, using):
            # A statement failed: the server has already rolled the whole transaction back.
            raise _conflict(saved, using) from exc_value


def _conflict(saved: list[tuple[Any, str, Any]], using: str) -> WriteConflictError:
    """Build the error for a rolled-back transaction, reading the first saved row's version."""
    objects: list[Any] = []
    first: tuple[Any, Any] | None = None
    for instance, alias, version in saved:
        if alias != using or any(obj is instance for obj in objects):
            continue
        objects.append(instance)
        if first is None:
            first = (instance, version)
    if first is None:
        return WriteConflictError(objects=objects)
    instance, version = first
    current = current_version(instance, using)
    db_version = current[0] if current else None
    announce(instance, version, db_version, not current)
    return WriteConflictError(target=instance, version=version, db_version=db_version, objects=objects)


@overload
def atomic(using: F) -> F: ...


@overload
def atomic(using: str | None = ..., savepoint: bool = ..., durable: bool = ...) -> Atomic: ...


def atomic(using: Any = None, savepoint: bool = True, durable: bool = False) -> Any:
    """Return Django's ``atomic(using, savepoint, durable)``, reporting write conflicts (see above)."""
    if callable(using):
        return Atomic(DEFAULT_DB_ALIAS, savepoint, durable)(using)
    return Atomic(using, savepoint, durable)
