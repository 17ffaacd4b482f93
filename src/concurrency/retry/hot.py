"""Hot rows: the calls that conflicted a moment ago lock their rows before they read them."""

from __future__ import annotations

import contextlib
import time
from typing import Any, TypeVar

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.expressions import Col
from django.db.models.lookups import Exact, Lookup
from django.db.models.sql.where import AND

from ..core.locks import GoneError, lock_rows
from ..core.watch import reading as hot_lock
from ..exceptions import BulkUpdateConflictError, RecordModifiedError

M = TypeVar("M", bound=Model)
_ALL = object()  # every row: no one key


class HotLock:
    """The rows a hot call's first attempt locks before the function reads them.

    Active for the attempt. The function's own read of one of the rows (a
    query of the model by its key alone, ``Counter.objects.get(pk=pk)``, or
    through ``locked()``) becomes the ``SELECT ... FOR UPDATE`` that locks it,
    so the attempt sends what ``select_for_update()`` would; the rows no read
    took over are locked by ``core.locks.lock_rows`` before the attempt's
    first statement (a row deleted meanwhile is left to the function to find).
    """

    def __init__(self, rows: HotSet) -> None:
        self.rows = {entry: list(keys) for entry, keys in rows}
        self.usings = tuple(dict.fromkeys(using for (_model, using), _keys in rows))

    def __enter__(self) -> HotLock:
        self.token = hot_lock.set(self)
        # What connection.execute_wrapper() does, without a context manager per attempt.
        for using in self.usings:
            connections[using].execute_wrappers.append(self.before)
        return self

    def __exit__(self, *exc: object) -> None:
        for using in reversed(self.usings):
            connections[using].execute_wrappers.pop()
        hot_lock.reset(self.token)

    def claim(self, model: type[Model], using: str, key: Any = _ALL) -> None:
        """Leave the row ``key`` (or every row) of ``model`` on ``using`` to the function's locking read."""
        entry = (model._meta.concrete_model, using)
        keys = self.rows.get(entry)
        if keys is None:
            return
        if key is not _ALL and key in keys:
            keys.remove(key)
        if key is _ALL or not keys:
            del self.rows[entry]

    def lock_read(self, compiler: Any) -> bool:
        """Return whether the SELECT of ``compiler`` is to lock: it reads one of the rows, and only it."""
        query = compiler.query
        if not self.rows or query.model is None:
            return False
        keys = self.rows.get((query.model._meta.concrete_model, compiler.using))
        features = compiler.connection.features
        if not keys or not features.has_select_for_update or not compiler.connection.in_atomic_block:
            return False
        if query.is_sliced and not features.supports_select_for_update_with_limit:
            return False
        key = row_read(query)
        if key is _ALL or key not in keys:
            return False
        self.claim(query.model, compiler.using, key)
        return True

    def before(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        """Lock the rows not taken over before the attempt's first statement, then run it."""
        rows, self.rows = self.rows, {}  # Once: the lock's own statement comes through here too.
        for (model, using), keys in rows.items():
            with contextlib.suppress(GoneError):  # Deleted since: the function finds out itself.
                lock_rows(connections[using], model, keys)
        return execute(sql, params, many, context)


def row_read(query: Any) -> Any:
    """Return the key of the one row ``query`` reads by its primary key, or ``_ALL``.

    Only a plain SELECT of one table whose WHERE is ``pk = value`` (ANDed with
    other plain comparisons of its columns) qualifies: locking it takes no row
    but that one, the way ``select_for_update()`` of the same query would.
    """
    if (
        query.subquery
        or query.combinator
        or query.distinct
        or query.group_by is not None
        or query.select_related
        or query.annotations
        or query.extra
        or len(query.alias_map) != 1
    ):
        return _ALL
    where = query.where
    if where.connector != AND or where.negated:
        return _ALL
    key = _ALL
    for child in where.children:
        if not isinstance(child, Lookup) or not isinstance(child.lhs, Col):
            return _ALL
        if hasattr(child.rhs, "resolve_expression") or hasattr(child.rhs, "as_sql"):
            return _ALL
        if isinstance(child, Exact) and child.lhs.target.primary_key and child.rhs is not None:
            key = child.rhs
    return key


def locked(queryset: QuerySet[M]) -> QuerySet[M]:
    """Return ``queryset.select_for_update()`` in an attempt that locks, ``queryset`` otherwise.

    For a function under ``retry_on_conflict(lock_on_retry=True)`` that finds
    a hot row by something other than its primary key (a read by key is made
    the locking read without it): in a call like one refused a moment ago,
    its own read then takes the row lock, and the wrapper sends no locking
    read of its own, so the attempt runs the statements ``select_for_update()``
    would. Anywhere else, and in optimistic attempts, the queryset is
    returned as it is.
    """
    hot = hot_lock.get()
    if hot is None:
        return queryset
    locking = queryset.select_for_update()
    hot.claim(locking.model, locking.db)  # the database it writes to: where the row lock is
    return locking


# The rows a hot call locks: ((concrete model, database), keys) in one order (model, then key)
# whichever process locks them, so two hot calls do not deadlock on them.
HotSet = tuple[tuple[tuple[Any, str], tuple[Any, ...]], ...]


def hot_set(instances: list[Model]) -> HotSet:
    """Return the rows of ``instances`` as a hot call locks them: worked out once, when refused."""
    rows: dict[tuple[Any, str], list[Any]] = {}
    for instance in sorted(instances, key=lambda row: (row._meta.label, str(row.pk))):
        model = type(instance)
        # From the database the write goes to, not a lagging replica.
        rows.setdefault((model._meta.concrete_model, router.db_for_write(model)), []).append(instance.pk)
    return tuple((entry, tuple(keys)) for entry, keys in rows.items())


def refused_instances(error: RecordModifiedError) -> list[Model]:
    """Return the instances ``error`` was raised for: its target, or each of a bulk conflict's objects."""
    named = error.objects if isinstance(error, BulkUpdateConflictError) else [error.target]
    return [instance for instance in named if instance is not None]


class HotRows:
    """The rows that calls of one wrapped function were refused on lately, by the call's arguments.

    With ``lock_on_retry``, a call with the same (hashable) arguments as one
    refused less than ``HOT_FOR`` seconds ago locks those rows in its first
    attempt already: on a hot row, most first attempts would lose, and the
    attempt after a conflict locks anyway. A call that conflicts again renews
    the entry; when it has expired the next call is optimistic again.
    """

    HOT_FOR = 1.0
    SIZE = 256

    def __init__(self) -> None:
        self.rows: dict[Any, tuple[float, HotSet]] = {}

    @staticmethod
    def key(args: Any, kwargs: dict[str, Any]) -> Any:
        key = (args, frozenset(kwargs.items()))
        try:
            hash(key)
        except TypeError:  # a list argument, an unsaved instance: nothing to remember by
            return None
        return key

    def get(self, key: Any) -> HotSet:
        if key is None:
            return ()
        refused_at, rows = self.rows.get(key, (0.0, ()))
        return rows if time.monotonic() - refused_at < self.HOT_FOR else ()

    def remember(self, key: Any, error: RecordModifiedError) -> None:
        if key is None:
            return
        self.rows.pop(key, None)
        self.rows[key] = (time.monotonic(), hot_set(refused_instances(error)))
        while len(self.rows) > self.SIZE:
            self.rows.pop(next(iter(self.rows)), None)
