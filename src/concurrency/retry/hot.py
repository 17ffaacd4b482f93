"""Hot rows: the calls that conflicted a moment ago lock their rows before they read them."""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Any, TypeVar

from django.db import connections, router
from django.db.models import Model, QuerySet

from ..core.locks import GoneError, lock_rows
from ..exceptions import BulkUpdateConflictError, RecordModifiedError

M = TypeVar("M", bound=Model)


class HotLock:
    """The rows a hot call's first attempt locks before the function reads them.

    Active for the attempt: ``locked()`` hands the function a locking queryset
    and takes over the rows of its model; before the attempt's first statement
    the rest are locked by ``core.locks.lock_rows`` (a row deleted meanwhile is left to
    the function to find).
    """

    def __init__(self, rows: tuple[tuple[type[Model], Any], ...]) -> None:
        self.rows: dict[tuple[type[Model], str], list[Any]] = {}
        for model, pk in sorted(rows, key=lambda row: (row[0]._meta.label, str(row[1]))):
            # From the database the write goes to, not a lagging replica.
            self.rows.setdefault((model, router.db_for_write(model)), []).append(pk)
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> HotLock:
        self.token = hot_lock.set(self)
        for using in dict.fromkeys(using for _model, using in self.rows):
            self.stack.enter_context(connections[using].execute_wrapper(self.before))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()
        hot_lock.reset(self.token)

    def claim(self, model: type[Model], using: str) -> None:
        """Leave the rows of ``model`` on ``using`` to the locking read the function makes of them."""
        concrete = model._meta.concrete_model
        for key in [key for key in self.rows if key[0]._meta.concrete_model is concrete and key[1] == using]:
            del self.rows[key]

    def before(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        """Lock the rows not taken over before the attempt's first statement, then run it."""
        rows, self.rows = self.rows, {}  # Once: the lock's own statement comes through here too.
        for (model, using), keys in rows.items():
            with contextlib.suppress(GoneError):  # Deleted since: the function finds out itself.
                lock_rows(connections[using], model, keys)
        return execute(sql, params, many, context)


hot_lock: contextvars.ContextVar[HotLock | None] = contextvars.ContextVar(
    "concurrency_hot_lock", default=None
)


def locked(queryset: QuerySet[M]) -> QuerySet[M]:
    """Return ``queryset.select_for_update()`` in an attempt that locks, ``queryset`` otherwise.

    For a function under ``retry_on_conflict(lock_on_retry=True)`` that reads
    a hot row itself: in a call like one refused a moment ago, its own read
    then takes the row lock, and the wrapper sends no locking read of its
    own, so the attempt runs the statements ``select_for_update()`` would.
    Anywhere else, and in optimistic attempts, the queryset is returned as it is.
    """
    hot = hot_lock.get()
    if hot is None:
        return queryset
    locking = queryset.select_for_update()
    hot.claim(locking.model, locking.db)  # the database it writes to: where the row lock is
    return locking


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
        self.rows: dict[Any, tuple[float, tuple[tuple[type[Model], Any], ...]]] = {}

    @staticmethod
    def key(args: Any, kwargs: dict[str, Any]) -> Any:
        key = (args, frozenset(kwargs.items()))
        try:
            hash(key)
        except TypeError:  # a list argument, an unsaved instance: nothing to remember by
            return None
        return key

    def get(self, key: Any) -> tuple[tuple[type[Model], Any], ...]:
        if key is None:
            return ()
        refused_at, rows = self.rows.get(key, (0.0, ()))
        return rows if time.monotonic() - refused_at < self.HOT_FOR else ()

    def remember(self, key: Any, error: RecordModifiedError) -> None:
        if key is None:
            return
        rows = tuple((type(instance), instance.pk) for instance in refused_instances(error))
        self.rows.pop(key, None)
        self.rows[key] = (time.monotonic(), rows)
        while len(self.rows) > self.SIZE:
            self.rows.pop(next(iter(self.rows)), None)
