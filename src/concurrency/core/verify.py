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
not loaded with the row) is refused the same way, by ``tracking.versions_to_check``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, NoReturn

from django.db import connections, router, transaction
from django.db.models import Model
from django.utils.translation import gettext

from .locks import (
    integer_keys,
    needs_write_lock,
    prepared_keys,
    sql_select_versions,
    sql_share_lock,
    sql_write_lock,
)
from .options import options, options_of
from .refusal import conflict
from .tracking import versions_to_check
from .versions import database_of

_GONE = object()


def _group(instances: Iterable[Model]) -> dict[tuple[Any, str], list[tuple[Model, Any]]]:
    """Group ``(instance, key)`` by the model holding the version column and the database."""
    groups: dict[tuple[Any, str], list[tuple[Model, Any]]] = {}
    cls: Any = None
    last: tuple[Any, str] | None = None
    group: list[tuple[Model, Any]] = []
    # Where the rows are written, which is where they are locked: with routers, not a replica.
    routed = bool(router.routers)
    for instance in instances:
        if type(instance) is not cls:
            # Looked up once per run of one class: the rows of a decision mostly share one.
            meta = options_of(instance)
            if meta is None or not isinstance(instance, Model):
                raise TypeError(f"{instance!r} is not under concurrency control (it has no version field)")
            cls, model, pk = type(instance), meta.field.model, instance._meta.pk
            attname, integer = pk.attname, integer_keys(model)
        state, key = instance._state, getattr(instance, attname)
        if key is None or state.adding:
            raise ValueError(f"{instance!r} has not been saved: there is no row to verify.")
        if not integer or type(key) is not int:
            # As the rows are read back: Django's own integer keys are ints as loaded.
            key = pk.to_python(key)
        using = database_of(instance) if routed else state.db or "default"
        if (model, using) != last:
            last = (model, using)
            group = groups.setdefault(last, [])
        group.append((instance, key))
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
    field = options(model).field
    pk: Any = model._meta.pk
    # Refused before anything is sent, as a save of the instance would be. Left
    # out: instances switched off. Held, not compared: rows without a version yet.
    held = list(versions_to_check(group, field, using))
    if not held:
        return
    connection = connections[using]
    keys, integer = prepared_keys(connection, model, [key for _obj, key, _version, _checked in held])
    sql, params = sql_select_versions(connection, model, field, keys, integer)
    with connection.cursor() as cursor:
        if needs_write_lock(connection):
            cursor.execute(sql_write_lock(connection, model, field))
        cursor.execute(sql + sql_share_lock(connection), params)
        # The versions of the rows as this statement locked them: none can
        # change between this comparison and the end of the transaction.
        rows = cursor.fetchall()
    current = dict(rows) if integer else {pk.to_python(key): version for key, version in rows}
    for obj, key, version, checked in held:
        stored = current.get(key, _GONE)
        # Equal as sent and as read in the common case; otherwise compared as the field reads values.
        if checked and stored != version and (version is None or stored != field.to_python(version)):
            _refuse(obj, version, None if stored is _GONE else stored, stored is _GONE)


def _refuse(instance: Model, version: Any, db_version: Any, deleted: bool) -> NoReturn:
    """Raise the error for a row read at ``version`` that the database no longer holds."""
    row = f"{instance._meta.label} {instance.pk}"
    if deleted:
        message = gettext("%(row)s was deleted after it was read at version %(version)s.")
    else:
        message = gettext("%(row)s changed after it was read (version %(version)s, now %(db_version)s).")
    text = message % {"row": row, "version": version, "db_version": db_version}
    raise conflict(instance, version, message=text, current=[] if deleted else [db_version])


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
