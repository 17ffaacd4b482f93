"""Guard rows a decision was read from: the machinery of ``api.verify_unchanged``.

A transaction that reads rows A and B and writes only C commits a wrong
decision if A or B changed in between (write skew). Verifying A and B is one
locking read per model (and database) that compares the versions::

    SELECT pk, version FROM t WHERE (pk = 1 AND version = 3) OR (pk = 2 AND version = 5) FOR SHARE

Every row it matches is held until the transaction ends and is not written
(see below for each backend); a row it does not match was changed or deleted,
and is reported as a refused save is: ``RecordModifiedError`` or
``RecordDeletedError`` and the ``conflict_detected`` signal. An instance whose
save would be refused before it is sent (a version not loaded with the row) is
refused the same way, by ``core.held_version``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, NoReturn

from django.db import connections, transaction
from django.db.models import Model
from django.db.models.sql.where import AND
from django.utils.translation import gettext

from . import core
from .exceptions import RecordDeletedError, RecordModifiedError
from .signals import conflict_detected

_GONE = object()


def _group(instances: Iterable[Model]) -> dict[tuple[Any, str], list[Model]]:
    """Group ``instances`` by the model holding their version column and their database."""
    groups: dict[tuple[Any, str], list[Model]] = {}
    for instance in instances:
        options = getattr(instance, "_concurrencymeta", None)
        if options is None or not isinstance(instance, Model):
            raise TypeError(f"{instance!r} is not under concurrency control (it has no version field)")
        if instance.pk is None or instance._state.adding:
            raise ValueError(f"{instance!r} has not been saved: there is no row to verify.")
        groups.setdefault((options.field.model, instance._state.db or "default"), []).append(instance)
    return groups


def verify(instances: Iterable[Model]) -> None:
    """Check that each instance's row still holds its version, and lock the rows.

    Instances whose checks are switched off (``disable_concurrency``) are
    left alone. Raise for the first stale instance, in the order given.
    """
    for (model, using), group in _group(instances).items():
        checked = [obj for obj in group if core.is_checked(obj)]
        if checked:
            _verify_model(model, using, checked)


def _verify_model(model: type[Model], using: str, instances: list[Model]) -> None:
    field = model._concurrencymeta.field  # type: ignore[attr-defined]
    attname = field.attname
    connection = connections[using]
    pk: Any = model._meta.pk
    held = []
    # (pk, version) -> whether it is checked, as a save of the instance would be.
    pairs: dict[tuple[Any, Any], bool] = {}
    for obj in instances:
        version, checked = core.held_version(obj, field, using)
        key = pk.to_python(obj.pk)
        held.append((obj, key, version, checked))
        pairs.setdefault((key, version), checked)
    rows = model._base_manager.using(using).order_by().values_list("pk", attname)
    query: Any = rows.query
    alias = query.get_initial_alias()
    keyed = [
        (pk.get_db_prep_value(key, connection), version, checked) for (key, version), checked in pairs.items()
    ]
    query.where.add(core._KeyedRows(pk.get_col(alias), field.get_col(alias), keyed, field), AND)
    sql, params = query.get_compiler(using).as_sql()
    with connection.cursor() as cursor:
        if _needs_write_lock(connection):
            cursor.execute(_sql_write_lock(connection, model, field))
        cursor.execute(sql + _sql_share_lock(connection), params)
        # One pk held at two versions matches one row: the count tells.
        if len(cursor.fetchall()) == len(pairs):
            return
    # A locking read: under REPEATABLE READ (MariaDB) a plain SELECT would
    # answer from the transaction's snapshot, which predates the change.
    with transaction.atomic(using=using, savepoint=False):
        locked = model._base_manager.using(using).select_for_update()  # type: ignore[attr-defined]
        current = dict(locked.filter(pk__in={key for key, _version in pairs}).values_list("pk", attname))
    for obj, key, version, checked in held:
        if checked and current.get(key, _GONE) != version:
            _refuse(obj, version, current.get(key), key not in current)


# --- Holding the verified rows until the transaction ends, without writing them ---
# PostgreSQL, MariaDB and MySQL: a shared row lock taken by the SELECT that
# compares the versions. Other writers of the rows wait for the transaction;
# other readers, verifying ones too, do not. A row changed meanwhile is read as
# it is now (READ COMMITTED re-checks the WHERE clause on the new row; InnoDB's
# locking reads see the latest version; PostgreSQL's REPEATABLE READ refuses
# with a serialization failure). SQLite has no row locks: it takes its one write
# lock, which BEGIN IMMEDIATE has already taken; an UPDATE that matches no row
# takes it in a DEFERRED transaction without running any trigger.

_SHARE_LOCK = {"PostgreSQL": " FOR SHARE", "MariaDB": " LOCK IN SHARE MODE", "MySQL": " FOR SHARE"}


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
        self.databases = list(dict.fromkeys(using for _model, using in _group(instances)))
        self._stacks: list[ExitStack] = []

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
