"""Guard rows a decision was read from: the machinery of ``api.verify_unchanged``.

A transaction that reads rows A and B and writes only C commits a wrong
decision if A or B changed in between (write skew). Verifying A and B runs
the no-op compare-and-swap that checked deletes use::

    UPDATE t SET version = version WHERE (pk = 1 AND version = 3) OR (pk = 2 AND version = 5)

one statement per model (and database). Every row it matches is locked until
the transaction ends, on every backend; a row it does not match was changed or
deleted, and is reported as a refused save is: ``RecordModifiedError`` or
``RecordDeletedError`` and the ``conflict_detected`` signal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, NoReturn

from django.db import connections, transaction
from django.db.models import F, Model
from django.db.models.sql.constants import ROW_COUNT
from django.db.models.sql.subqueries import UpdateQuery
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
    pairs: dict[tuple[Any, Any], Model] = {}
    for obj in instances:
        core.settle(obj)
        pairs.setdefault((pk.to_python(obj.pk), getattr(obj, attname)), obj)
    query: Any = model._base_manager.using(using).query.chain(UpdateQuery)
    query.add_update_fields([(field, None, F(attname))])
    alias = query.get_initial_alias()
    rows = [(pk.get_db_prep_value(key, connection), version, True) for key, version in pairs]
    query.where.add(core._KeyedRows(pk.get_col(alias), field.get_col(alias), rows, field), AND)
    compiler = query.get_compiler(using)
    if core._can_update_returning(connection):
        sql, params = compiler.as_sql()
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {qn(pk.column)}, {qn(field.column)}", params)
            matched = {(pk.to_python(key), version) for key, version in cursor.fetchall()}
        if len(matched) == len(pairs):
            return
    else:
        # MySQL/MariaDB count matched rows (Django sets CLIENT.FOUND_ROWS), and
        # one pk held at two versions cannot match twice.
        if compiler.execute_sql(ROW_COUNT) == len(pairs) == len({key for key, _version in pairs}):
            return
    # A locking read: under REPEATABLE READ (MariaDB) a plain SELECT would
    # answer from the transaction's snapshot, which predates the change.
    with transaction.atomic(using=using, savepoint=False):
        locked = model._base_manager.using(using).select_for_update()  # type: ignore[attr-defined]
        current = dict(locked.filter(pk__in={key for key, _version in pairs}).values_list("pk", attname))
    for obj in instances:
        key, version = pk.to_python(obj.pk), getattr(obj, attname)
        if current.get(key, _GONE) != version:
            _refuse(obj, version, current.get(key), key not in current)


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
