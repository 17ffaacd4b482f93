"""Guard rows a decision was read from: the machinery of ``api.verify_unchanged``.

A transaction that reads rows A and B and writes only C commits a wrong
decision if A or B changed in between (write skew). Verifying A and B is one
locking read per model (and database)::

    SELECT pk, version FROM t WHERE pk IN (1, 2) FOR SHARE

Every row it returns is held until the transaction ends and is not written
(see below for each backend), so the versions it returns are the ones the rows
keep: a row at another version than the instance holds, or missing, was
changed or deleted, and is reported as a refused save is:
``RecordModifiedError`` or ``RecordDeletedError`` and the ``conflict_detected``
signal. An instance whose save would be refused before it is sent (a version
not loaded with the row) is refused the same way, by ``core.held_version``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, NoReturn

from django.db import connections, transaction
from django.db.models import AutoField, BigAutoField, BigIntegerField, IntegerField, Model, SmallAutoField
from django.utils.translation import gettext

from . import core
from .exceptions import RecordDeletedError, RecordModifiedError
from .signals import conflict_detected

_GONE = object()


def _group(instances: Iterable[Model]) -> dict[tuple[Any, str], list[tuple[Model, Any]]]:
    """Group ``(instance, pk)`` by the model holding the version column and the database."""
    groups: dict[tuple[Any, str], list[tuple[Model, Any]]] = {}
    cls: Any = None
    for instance in instances:
        if type(instance) is not cls:
            # Looked up once per run of one class: the rows of a decision mostly share one.
            options = getattr(instance, "_concurrencymeta", None)
            if options is None or not isinstance(instance, Model):
                raise TypeError(f"{instance!r} is not under concurrency control (it has no version field)")
            cls, model = type(instance), options.field.model
        state, key = instance._state, instance.pk
        if key is None or state.adding:
            raise ValueError(f"{instance!r} has not been saved: there is no row to verify.")
        groups.setdefault((model, state.db or "default"), []).append((instance, key))
    return groups


def verify(instances: Iterable[Model]) -> None:
    """Check that each instance's row still holds its version, and lock the rows.

    Instances whose checks are switched off (``disable_concurrency``) are
    left alone, as their saves would be. Raise for the first stale instance,
    in the order given.
    """
    for (model, using), group in _group(instances).items():
        _verify_model(model, using, group)


def _verify_model(model: type[Model], using: str, group: list[tuple[Model, Any]]) -> None:
    field = model._concurrencymeta.field  # type: ignore[attr-defined]
    pk: Any = model._meta.pk
    # Django's own integer keys are ints as loaded, written into the SQL as digits.
    integer = integer_keys(model)
    held = []
    for obj, key in group:
        # Refused before anything is sent, as a save of the instance would be.
        version, checked = core.held_version(obj, field, using)
        # Unchecked: switched off (left alone), or a row without a version yet (held, not compared).
        if checked or core.is_checked(obj):
            held.append((obj, key if integer and type(key) is int else pk.to_python(key), version, checked))
    if not held:
        return
    connection = connections[using]
    keys = list(dict.fromkeys(key for _obj, key, _version, _checked in held))
    if not integer:
        keys = [
            pk.get_db_prep_value(key, connection, prepared=True) for key in keys
        ]  # to_python() prepared them
    sql, params = _sql_select(connection, model, field, keys, integer)
    with connection.cursor() as cursor:
        if _needs_write_lock(connection):
            cursor.execute(_sql_write_lock(connection, model, field))
        cursor.execute(sql + _sql_share_lock(connection), params)
        # The versions of the rows as this statement locked them: none can
        # change between this comparison and the end of the transaction.
        rows = cursor.fetchall()
    current = dict(rows) if integer else {pk.to_python(key): version for key, version in rows}
    for obj, key, version, checked in held:
        stored = current.get(key, _GONE)
        # Equal as sent and as read in the common case; otherwise compared as the field reads values.
        if checked and stored != version and (version is None or stored != field.to_python(version)):
            _refuse(obj, version, None if stored is _GONE else stored, stored is _GONE)


# Key fields whose values are plain ints, prepared as they are (their subclasses may convert).
_INTEGER_KEY_TYPES = (AutoField, BigAutoField, SmallAutoField, IntegerField, BigIntegerField)


# --- Holding the verified rows until the transaction ends, without writing them ---
# PostgreSQL, MariaDB and MySQL: a shared row lock taken by the SELECT whose
# versions are compared. Other writers of the rows wait for the transaction;
# other readers, verifying ones too, do not. A row changed meanwhile is read as
# it is now (under READ COMMITTED, a SELECT that waited for a writer returns the
# row the writer left; InnoDB's locking reads see the latest version, not the
# snapshot; PostgreSQL's REPEATABLE READ refuses with a serialization failure).
# SQLite has no row locks: it takes its one write lock, which BEGIN IMMEDIATE
# has already taken; an UPDATE that matches no row takes it in a DEFERRED
# transaction without running any trigger.

_SHARE_LOCK = {"PostgreSQL": " FOR SHARE", "MariaDB": " LOCK IN SHARE MODE", "MySQL": " FOR SHARE"}


def _sql_select(
    connection: Any, model: type[Model], field: Any, keys: list[Any], integer: bool = False
) -> tuple[str, list[Any] | None]:
    """Return ``SELECT pk, version FROM table WHERE pk IN (…)`` and its parameters."""
    qn = connection.ops.quote_name
    where, params = sql_where_keys(connection, model, keys, integer)
    key = qn(model._meta.pk.column)  # type: ignore[union-attr]
    return f"SELECT {key}, {qn(field.column)} FROM {qn(model._meta.db_table)} WHERE {where}", params


def integer_keys(model: type[Model]) -> bool:
    """Return whether the keys of ``model`` are Django's own integers: ints as loaded, no conversion."""
    return type(model._meta.pk) in _INTEGER_KEY_TYPES


def sql_where_keys(
    connection: Any, model: type[Model], keys: list[Any], integer: bool
) -> tuple[str, list[Any] | None]:
    """Return ``pk IN (…)`` for prepared ``keys`` and its parameters (``retry`` locks rows with it too).

    ``integer``: the keys are ints, written into the SQL as digits: a third of
    the client's work of binding them (as parameters or as one array), and
    SQLite limits how many parameters a statement may have.
    """
    key = connection.ops.quote_name(model._meta.pk.column)  # type: ignore[union-attr]
    if integer:
        return f"{key} IN ({', '.join(map(str, keys))})", None
    if connection.vendor == "postgresql":
        # One array parameter: binding a hundred costs the client more than the lock costs the server.
        return f"{key} = ANY(%s)", [keys]
    return f"{key} IN ({', '.join(['%s'] * len(keys))})", keys


def _sql_share_lock(connection: Any) -> str:
    """Return the clause that makes a SELECT hold its rows until the transaction ends."""
    if connection.vendor == "sqlite":
        return ""
    try:
        return _SHARE_LOCK[connection.display_name]
    except KeyError:
        # Another backend: an exclusive lock, which also writes nothing.
        return " " + connection.ops.for_update_sql()


def _needs_write_lock(connection: Any) -> bool:
    """Return whether verifying on SQLite must take the write lock the transaction lacks."""
    if connection.vendor != "sqlite" or connection.get_autocommit():
        return False
    return not (connection.in_atomic_block and connection.transaction_mode in ("IMMEDIATE", "EXCLUSIVE"))


def _sql_write_lock(connection: Any, model: type[Model], field: Any) -> str:
    """Return an UPDATE that takes SQLite's write lock and changes no row."""
    qn = connection.ops.quote_name
    column = qn(field.column)
    return f"UPDATE {qn(model._meta.db_table)} SET {column} = {column} WHERE 1 = 0"


def _refuse(instance: Model, version: Any, db_version: Any, deleted: bool) -> NoReturn:
    """Raise the error for a row read at ``version`` that the database no longer holds."""
    row = f"{instance._meta.label} {instance.pk}"
    if deleted:
        message = gettext("%(row)s was deleted after it was read at version %(version)s.")
    else:
        message = gettext("%(row)s changed after it was read (version %(version)s, now %(db_version)s).")
    cls = RecordDeletedError if deleted else RecordModifiedError
    error = cls(
        message % {"row": row, "version": version, "db_version": db_version},
        target=instance,
        version=version,
        db_version=db_version,
    )
    conflict_detected.send(
        sender=type(instance), instance=instance, version=version, db_version=db_version, deleted=deleted
    )
    raise error


class VerifyUnchanged:
    """The object ``api.verify_unchanged`` returns: a context manager verifying at exit.

    Entering opens ``transaction.atomic()`` on each database the instances
    live on; leaving the block without an exception verifies them again
    before that transaction commits, and a stale row rolls the block back.
    """

    def __init__(self, instances: tuple[Model, ...]) -> None:
        self.instances = instances
        self._stacks: list[ExitStack] = []

    @property
    def databases(self) -> list[str]:
        """The databases the instances live on: worked out when entered, as most calls are not."""
        return list(dict.fromkeys(using for _model, using in _group(self.instances)))

    def __enter__(self) -> VerifyUnchanged:
        stack = ExitStack()
        for using in self.databases:
            stack.enter_context(transaction.atomic(using=using))
        self._stacks.append(stack)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack = self._stacks.pop()
        if exc_type is None:
            try:
                verify(self.instances)
            except BaseException:
                stack.__exit__(*sys.exc_info())
                raise
        return stack.__exit__(exc_type, exc, tb)
