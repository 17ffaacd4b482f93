"""Run read-modify-write code again when its versioned write is refused.

A conflict means someone else wrote the row between our read and our write;
the cure is to read it again and redo the change. ``retry_on_conflict`` does
exactly that, with a savepoint per attempt so a refused attempt leaves no
partial writes behind and does not break an enclosing ``atomic()`` block::

    @retry_on_conflict(attempts=5)
    def add_stock(pk, quantity):
        item = Item.objects.get(pk=pk)
        item.stock += quantity
        item.save()
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from asgiref.sync import sync_to_async
from django.core.exceptions import ObjectDoesNotExist
from django.db import connections, router
from django.db.models import Model

from ..core.locks import GoneError, lock_rows
from ..core.options import options_of
from ..exceptions import BulkUpdateConflictError, RecordDeletedError, RecordModifiedError
from ..transaction import atomic

__all__ = ["locked", "retry_on_conflict"]

from .hot import HotLock, HotRows, HotSet, hot_lock, locked, refused_instances

logger = logging.getLogger("concurrency")

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class _Policy:
    attempts: int
    delay: float
    max_delay: float
    jitter: bool
    refresh: bool
    using: str | None
    lock_on_retry: bool = False

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            if self.lock_on_retry:
                raise TypeError(
                    "lock_on_retry=True needs a transaction per attempt, which an async def "
                    "function does not get: decorate a plain function and await its acall()."
                )
            return self._wrap_async(func)  # type: ignore[return-value]
        return self._wrap_sync(func)  # type: ignore[return-value]

    def backoff(self, attempt: int) -> float:
        """Return the pause after failed attempt number ``attempt`` (1-based)."""
        if self.lock_on_retry:
            # The next attempt waits for the row lock instead, and for no longer than needed.
            return 0.0
        cap = min(self.max_delay, self.delay * 2 ** (attempt - 1))
        # "Full jitter": threads that collided once must not collide again in step.
        return random.uniform(0, cap) if self.jitter else cap

    def retries(self, error: RecordModifiedError, attempt: int) -> bool:
        """Return whether to try again after ``error`` ended attempt ``attempt``."""
        if attempt >= self.attempts:
            return False
        # A deleted row does not come back: another attempt cannot succeed.
        if isinstance(error, RecordDeletedError):
            return False
        if isinstance(error, BulkUpdateConflictError) and any(c.deleted for c in error.conflicts):
            return False
        logger.debug(
            "Retrying %s after a conflict (attempt %d of %d): %s",
            getattr(error.model, "__name__", "write"),
            attempt,
            self.attempts,
            error,
        )
        return True

    def reload(
        self, error: RecordModifiedError, args: Any = (), kwargs: Any = None, *, lock: bool = False
    ) -> None:
        """Refresh every versioned instance the attempt was given, and those the error names.

        A refused attempt is rolled back as a whole, so every instance it was
        handed (``args``, ``kwargs``, and one level of lists, tuples, sets and
        dicts in them) may hold changes the database no longer has: the next
        attempt must start from what the database holds, not only for the
        instance whose write was refused.

        With ``lock`` (called inside the next attempt's transaction) the rows
        the error names are read with ``SELECT ... FOR UPDATE`` instead, which
        refreshes them (see ``lock``).
        """
        stale = refused_instances(error)
        if lock:
            self.lock([(type(instance), instance.pk, instance) for instance in stale])
        if not self.refresh:
            return
        seen: set[int] = {id(instance) for instance in stale} if lock else set()
        for instance in [*stale, *_versioned_instances(args, kwargs or {})]:
            if id(instance) in seen:
                continue
            seen.add(id(instance))
            try:
                # From the database the write goes to, not a lagging replica.
                instance.refresh_from_db(using=router.db_for_write(type(instance), instance=instance))
            except ObjectDoesNotExist:
                raise error from None

    def lock(self, rows: list[tuple[type[Model], Any, Model | None]]) -> None:
        """Lock ``rows`` (model, pk, instance or None) with ``SELECT ... FOR UPDATE``.

        Called inside an attempt's transaction, in one order (model, pk)
        whichever process calls it, so two attempts locking the same rows do
        not deadlock on them. An instance is refreshed by the locking read
        (unless ``refresh=False``); the other rows of a model are only locked,
        by one prebuilt statement (no queryset to compile: on a hot row it
        runs under the previous holder's lock). A row that no longer exists
        raises ``GoneError``. On a database whose connection is not in a
        transaction (another database than ``using``) or that has no row
        locks (SQLite), the instance is only refreshed.
        """
        bare: dict[tuple[type[Model], str], list[Any]] = {}
        for model, pk, instance in sorted(rows, key=lambda row: (row[0]._meta.label, str(row[1]))):
            # From the database the write goes to, not a lagging replica.
            using = router.db_for_write(model, instance=instance)
            connection = connections[using]
            if instance is not None and self.refresh:
                rows_of: Any = model._base_manager.db_manager(using).all()
                if connection.in_atomic_block:
                    rows_of = rows_of.select_for_update()
                try:
                    instance.refresh_from_db(using=using, from_queryset=rows_of)
                except ObjectDoesNotExist:
                    raise GoneError from None
            else:
                bare.setdefault((model, using), []).append(pk)
        for (model, using), keys in bare.items():
            lock_rows(connections[using], model, keys)

    def attempt(
        self,
        func: Callable[..., Any],
        args: Any,
        kwargs: Any,
        refused: RecordModifiedError | None = None,
        hot: HotSet = (),
    ) -> Any:
        # concurrency.transaction.atomic: a transaction a cluster rolled back for a
        # concurrent write (Galera certification) is a conflict like any other.
        with atomic(using=self.using):
            if refused is not None:
                # lock_on_retry: this attempt starts by locking the rows the last one was refused on.
                try:
                    self.reload(refused, args, kwargs, lock=True)
                except GoneError:
                    raise refused from None
            elif hot:
                # lock_on_retry: a call like one refused a moment ago locks those rows,
                # by the function's own read of them (by key, or through locked()),
                # or else just before its first statement.
                with HotLock(hot):
                    return func(*args, **kwargs)
            if hot_lock.get() is None:
                return func(*args, **kwargs)
            # A wrapped call inside a hot attempt: its rows are not this attempt's to lock.
            token = hot_lock.set(None)
            try:
                return func(*args, **kwargs)
            finally:
                hot_lock.reset(token)

    def after(self, error: RecordModifiedError, args: Any, kwargs: Any) -> RecordModifiedError | None:
        """Prepare the next attempt after ``error``; return the error it must start by locking.

        Without ``lock_on_retry`` the instances are refreshed here, between
        attempts; with it, inside the next attempt's transaction, by a locking read.
        """
        if self.lock_on_retry:
            return error
        self.reload(error, args, kwargs)
        return None

    def _wrap_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        hot = HotRows()

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            attempt = 1
            refused = None
            key = hot.key(args, kwargs) if self.lock_on_retry else None
            while True:
                try:
                    return self.attempt(func, args, kwargs, refused, hot.get(key) if attempt == 1 else ())
                except RecordModifiedError as error:
                    # The refused error again: its row was deleted before the lock was taken.
                    if error is refused or not self.retries(error, attempt):
                        raise
                    refused = self.after(error, args, kwargs)
                    hot.remember(key, error)
                time.sleep(self.backoff(attempt))
                attempt += 1

        async def acall(*args: Any, **kwargs: Any) -> Any:
            attempt = 1
            refused = None
            key = hot.key(args, kwargs) if self.lock_on_retry else None
            while True:
                try:
                    return await sync_to_async(self.attempt)(
                        func, args, kwargs, refused, hot.get(key) if attempt == 1 else ()
                    )
                except RecordModifiedError as error:
                    if error is refused or not self.retries(error, attempt):
                        raise
                    refused = await sync_to_async(self.after)(error, args, kwargs)
                    hot.remember(key, error)
                await asyncio.sleep(self.backoff(attempt))
                attempt += 1

        wrapper.acall = acall  # type: ignore[attr-defined]
        return wrapper

    def _wrap_async(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            attempt = 1
            while True:
                try:
                    return await func(*args, **kwargs)
                except RecordModifiedError as error:
                    if not self.retries(error, attempt):
                        raise
                    await sync_to_async(self.reload)(error, args, kwargs)
                await asyncio.sleep(self.backoff(attempt))
                attempt += 1

        return wrapper


def _versioned_instances(args: Any, kwargs: dict[str, Any]) -> list[Any]:
    """Return the saved instances of versioned models among the arguments of a call."""
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, dict):
            candidates: Any = value.values()
        elif isinstance(value, list | tuple | set | frozenset):
            candidates = value
        else:
            candidates = (value,)
        for candidate in candidates:
            if (
                isinstance(candidate, Model)
                and options_of(candidate) is not None
                and not candidate._state.adding
            ):
                found.append(candidate)
    return found


@overload
def retry_on_conflict(
    func: F,
    /,
    *,
    attempts: int = ...,
    delay: float = ...,
    max_delay: float = ...,
    jitter: bool = ...,
    refresh: bool = ...,
    using: str | None = ...,
    lock_on_retry: bool = ...,
) -> F: ...


@overload
def retry_on_conflict(
    func: None = ...,
    /,
    *,
    attempts: int = ...,
    delay: float = ...,
    max_delay: float = ...,
    jitter: bool = ...,
    refresh: bool = ...,
    using: str | None = ...,
    lock_on_retry: bool = ...,
) -> Callable[[F], F]: ...


def retry_on_conflict(
    func: F | None = None,
    /,
    *,
    attempts: int = 3,
    delay: float = 0.01,
    max_delay: float = 1.0,
    jitter: bool = True,
    refresh: bool = True,
    using: str | None = None,
    lock_on_retry: bool = False,
) -> F | Callable[[F], F]:
    """Call ``func`` again when it raises ``RecordModifiedError``, at most ``attempts`` times in all.

    Use it as ``@retry_on_conflict``, ``@retry_on_conflict(attempts=5)`` or
    ``retry_on_conflict(func, attempts=5)``; each returns ``func`` wrapped.

    - Every attempt of a plain function runs in ``transaction.atomic(using=using)``:
      a transaction of its own, or a savepoint inside an enclosing one.
    - Before the next attempt every saved instance of a versioned model passed
      to ``func`` (as an argument, or in a list, tuple, set or dict argument)
      and the stale instances named by the error (``error.target``, or each of
      a ``BulkUpdateConflictError``'s objects) are refreshed from the
      database, unless ``refresh=False``: the refused attempt was rolled back,
      so none of its in-memory changes may be applied twice. Then the wrapper
      sleeps for a random time up to ``delay * 2 ** (attempt - 1)`` seconds,
      capped at ``max_delay`` (exactly that time if ``jitter=False``).
    - With ``lock_on_retry=True`` there is no pause: the next attempt starts
      inside its transaction by reading the refused rows with
      ``SELECT ... FOR UPDATE`` (refreshing those instances), so it waits for
      the writer ahead of it instead of racing it again. For hot rows, where
      retrying at once or after a pause keeps losing. A later call with the
      same (hashable) arguments within a second of a conflict locks those
      rows in its first attempt already: the function's own read of such a
      row by its primary key is sent as ``SELECT ... FOR UPDATE`` (or use
      ``locked()``), otherwise the wrapper locks the rows before the
      function's first statement. SQLite, which admits one writer at a time,
      has no row locks: nothing is locked there.
    - The last conflict is re-raised once the attempts are used up. A deleted
      row (``RecordDeletedError``) is re-raised at once: it cannot succeed.

    From async code, ``await wrapped.acall(...)`` runs each attempt of a plain
    function in ``sync_to_async`` and sleeps with ``asyncio.sleep``. An
    ``async def`` function can be decorated too; its attempts are awaited as
    they are, without a transaction, because Django has no async ``atomic()``.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1.")
    if delay < 0 or max_delay < 0:
        raise ValueError("delay and max_delay must not be negative.")
    policy = _Policy(attempts, delay, max_delay, jitter, refresh, using, lock_on_retry)
    if func is None:
        return policy
    return policy(func)
