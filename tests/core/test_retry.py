"""retry_on_conflict: re-read, re-apply, one savepoint per attempt."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, connections, models, transaction
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext

from concurrency import retry as retry_module
from concurrency.api import retry_on_conflict
from concurrency.exceptions import BulkUpdateConflictError, RecordDeletedError, RecordModifiedError
from concurrency.retry.hot import HotRows
from concurrency.signals import conflict_detected
from tests.demo.models import Category, Counter, ExplicitPk, Stock
from tests.support import workers
from tests.support.races import raised, run_together


def _interfere(stock: Stock) -> None:
    """Write the row behind the caller's back, as another request would."""
    Stock.objects.filter(pk=stock.pk).update(name="someone else")


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Record the pauses instead of sleeping through them (race tests really sleep)."""
    pauses: list[float] = []
    if "race" not in request.node.name:
        monkeypatch.setattr(retry_module.time, "sleep", pauses.append)
    if request.instance is not None:
        request.instance.pauses = pauses


class RetryTests(TestCase):
    pauses: list[float]

    def test_reread_and_reapply_succeeds_after_a_conflict(self) -> None:
        stock = Stock.objects.create(name="a")
        calls = []

        @retry_on_conflict
        def add(pk: int, quantity: int) -> int:
            item = Stock.objects.get(pk=pk)
            calls.append(item.version)
            if len(calls) == 1:
                # Inside the attempt's savepoint, so undone with it: see RaceTests
                # for writes by other connections.
                _interfere(item)
            item.quantity += quantity
            item.save()
            return item.quantity

        assert add(stock.pk, 3) == 3
        assert calls == [1, 1]
        row = Stock.objects.get()
        assert (row.quantity, row.version, row.name) == (3, 2, "a")
        assert add.__name__ == "add"

    def test_refreshes_the_stale_instance_it_was_given(self) -> None:
        stock = Stock.objects.create(name="a")
        _interfere(stock)

        def add(item: Stock) -> None:
            item.quantity += 2
            item.save()

        retry_on_conflict(add, attempts=2)(stock)
        row = Stock.objects.get()
        assert (row.quantity, row.version, row.name) == (2, 3, "someone else")
        assert stock.version == 3

    def test_without_refresh_a_stale_instance_exhausts_the_attempts(self) -> None:
        stock = Stock.objects.create(name="a")
        _interfere(stock)
        calls = []

        @retry_on_conflict(attempts=4, refresh=False)
        def touch(item: Stock) -> None:
            calls.append(1)
            item.save()

        with pytest.raises(RecordModifiedError) as info:
            touch(stock)
        assert len(calls) == 4
        assert (info.value.version, info.value.db_version) == (1, 2)

    def test_last_conflict_is_reraised_when_exhausted(self) -> None:
        Stock.objects.create(name="a")
        errors: list[RecordModifiedError] = []

        def always_stale() -> None:
            item = Stock.objects.get()
            _interfere(item)
            try:
                item.save()
            except RecordModifiedError as exc:
                errors.append(exc)
                raise

        with pytest.raises(RecordModifiedError) as info:
            retry_on_conflict(always_stale, attempts=3)()
        assert len(errors) == 3
        assert info.value is errors[-1]
        # Every attempt rolled back, including the interfering writes.
        assert Stock.objects.get().version == 1

    def test_deleted_row_is_not_retried(self) -> None:
        stock = Stock.objects.create(name="a")
        Stock.objects.filter(pk=stock.pk).delete()
        calls = []

        @retry_on_conflict(attempts=5)
        def save() -> None:
            calls.append(1)
            stock.save()

        with pytest.raises(RecordDeletedError):
            save()
        assert calls == [1]

    def test_other_errors_are_not_retried(self) -> None:
        calls = []

        @retry_on_conflict(attempts=5)
        def broken() -> None:
            calls.append(1)
            raise KeyError("x")

        with pytest.raises(KeyError):
            broken()
        assert calls == [1]

    def test_failed_attempt_is_rolled_back_inside_an_outer_atomic(self) -> None:
        stock = Stock.objects.create(name="a")
        attempts = []

        @retry_on_conflict
        def log_and_add() -> None:
            attempts.append(1)
            Category.objects.create(name=f"log {len(attempts)}")
            item = Stock.objects.get(pk=stock.pk)
            if len(attempts) == 1:
                _interfere(item)
            item.quantity += 1
            item.save()

        with transaction.atomic():
            log_and_add()
            Category.objects.create(name="after")
        assert list(Category.objects.order_by("pk").values_list("name", flat=True)) == ["log 2", "after"]
        assert Stock.objects.get().quantity == 1

    def test_backoff_is_exponential_capped_and_jittered(self) -> None:
        stock = Stock.objects.create(name="a")
        _interfere(stock)

        def stale() -> None:
            stock.save()

        with pytest.raises(RecordModifiedError):
            retry_on_conflict(stale, attempts=5, delay=0.1, max_delay=0.3, jitter=False, refresh=False)()
        assert self.pauses == pytest.approx([0.1, 0.2, 0.3, 0.3])
        self.pauses.clear()
        with pytest.raises(RecordModifiedError):
            retry_on_conflict(stale, attempts=30, delay=0.1, max_delay=0.3, refresh=False)()
        assert len(self.pauses) == 29
        assert all(0 <= p <= 0.3 for p in self.pauses)
        assert len(set(self.pauses)) > 1

    def test_bulk_conflicts_are_refreshed_and_retried(self) -> None:
        Stock.objects.bulk_create([Stock(name="a"), Stock(name="b")])
        stocks = list(Stock.objects.all())
        _interfere(stocks[1])

        @retry_on_conflict
        def restock(items: list[Stock]) -> int:
            for item in items:
                item.quantity = 10
            return Stock.objects.bulk_update(items, ["quantity"])

        assert restock(stocks) == 2
        assert list(Stock.objects.values_list("quantity", "version", "name")) == [
            (10, 2, "a"),
            (10, 3, "someone else"),
        ]

    def test_bulk_conflict_with_a_deleted_row_is_not_retried(self) -> None:
        Stock.objects.bulk_create([Stock(name="a"), Stock(name="b")])
        stocks = list(Stock.objects.all())
        Stock.objects.filter(pk=stocks[0].pk).delete()
        calls = []

        @retry_on_conflict
        def write() -> None:
            calls.append(1)
            Stock.objects.bulk_update(stocks, ["quantity"])

        with pytest.raises(BulkUpdateConflictError):
            write()
        assert calls == [1]

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="attempts"):
            retry_on_conflict(attempts=0)
        with pytest.raises(ValueError, match="negative"):
            retry_on_conflict(delay=-1)


class AsyncRetryTests(TransactionTestCase):
    async def test_acall_runs_attempts_in_sync_to_async(self) -> None:
        stock = await Stock.objects.acreate(name="a")
        calls = []

        def add() -> None:
            item = Stock.objects.get(pk=stock.pk)
            if not calls:
                _interfere(item)
            calls.append(1)
            item.quantity += 1
            item.save()

        await retry_on_conflict(add, delay=0).acall()
        assert len(calls) == 2
        assert (await Stock.objects.aget()).quantity == 1

    async def test_async_function_is_awaited_per_attempt(self) -> None:
        stock = await Stock.objects.acreate(name="a")
        await sync_to_async(_interfere)(stock)

        @retry_on_conflict(attempts=2, delay=0)
        async def add(item: Stock) -> int:
            item.quantity += 5
            await item.asave()
            return item.quantity

        assert asyncio.iscoroutinefunction(add)
        assert await add(stock) == 5
        row = await Stock.objects.aget()
        assert (row.quantity, row.version) == (5, 3)


def _race(threads: int, increments: int, **options: Any) -> int:
    """Increment one counter from several threads; return how many conflicts were retried."""
    conflicts = []
    lock = threading.Lock()

    def count(**kwargs: Any) -> None:
        with lock:
            conflicts.append(kwargs["db_version"])

    @retry_on_conflict(**options)
    def increment() -> None:
        counter = Counter.objects.get(name="race")
        counter.value += 1
        counter.save()

    def worker() -> None:
        for _ in range(increments):
            increment()

    conflict_detected.connect(count, sender=Counter, weak=False)
    try:
        errors = raised(run_together(*[worker] * threads))
    finally:
        conflict_detected.disconnect(count, sender=Counter)
    assert errors == []
    return len(conflicts)


@pytest.mark.race
class RaceTests(TransactionTestCase):
    """Real threads, each with its own connection: retried increments lose nothing."""

    def test_race_threads_lose_no_increment(self) -> None:
        Counter.objects.create(name="race")
        threads, increments = 4, 25
        conflicts = _race(threads, increments, attempts=100, delay=0.001, max_delay=0.02)
        counter = Counter.objects.get(name="race")
        assert counter.value == threads * increments
        assert counter.version == 1 + threads * increments
        if connections["default"].vendor != "sqlite":
            # Servers run the threads' transactions side by side, so they collide;
            # SQLite's BEGIN IMMEDIATE serialises them instead.
            assert conflicts > 0


@pytest.mark.race
class BulkRaceTests(TransactionTestCase):
    """Threads bulk-updating the same rows: every batch is all or nothing, nothing is lost."""

    def test_race_bulk_updates_lose_no_increment(self) -> None:
        Stock.objects.bulk_create([Stock(name=f"s{i}") for i in range(20)])
        threads, rounds = 3, 8

        @retry_on_conflict(attempts=200, delay=0.001, max_delay=0.02)
        def restock() -> None:
            items = list(Stock.objects.all())
            for item in items:
                item.quantity += 1
            Stock.objects.bulk_update(items, ["quantity"], batch_size=7)

        def worker() -> None:
            for _ in range(rounds):
                restock()

        conflicts = []

        def count(**kwargs: Any) -> None:
            conflicts.append(kwargs["instance"].pk)

        conflict_detected.connect(count, sender=Stock, weak=False)
        try:
            errors = raised(run_together(*[worker] * threads))
        finally:
            conflict_detected.disconnect(count, sender=Stock)
        assert errors == []
        if connections["default"].vendor != "sqlite":
            assert conflicts
        assert set(Stock.objects.values_list("quantity", "version")) == {
            (threads * rounds, 1 + threads * rounds)
        }


# --- lock_on_retry: the attempt after a conflict locks the refused row --------

CHILD_WAIT = 180.0


def _in_other_connection(work: Any) -> Any:
    """Run ``work()`` in a thread with a connection of its own; return its result or error."""
    [outcome] = run_together(work)
    return outcome


def _bookkeeping(sql: str) -> bool:
    """Return whether ``sql`` is transaction control rather than the attempt's work."""
    return sql.split(None, 1)[0].upper() in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "SET")


def _write_behind(pk: int) -> None:
    """Increment the counter from another connection, committed, as another process would."""

    def write() -> None:
        Counter.objects.filter(pk=pk).update(value=models.F("value") + 10, version=models.F("version") + 1)

    assert _in_other_connection(write) is None


class LockOnRetryTests(TransactionTestCase):
    pauses: list[float]

    def _lock_taken_by_other(self, pk: int) -> bool:
        """Return whether another connection finds the row locked (SELECT ... FOR UPDATE NOWAIT)."""

        def probe() -> None:
            with transaction.atomic():
                list(Counter.objects.select_for_update(nowait=True).filter(pk=pk))

        return isinstance(_in_other_connection(probe), DatabaseError)

    def test_escalated_attempt_holds_the_row_lock_and_keeps_the_increment(self) -> None:
        counter = Counter.objects.create(name="c")
        _write_behind(counter.pk)  # committed by another connection: the first attempt is refused
        seen: list[tuple[int, int, bool | None]] = []
        server = connection.vendor != "sqlite"

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def increment(row: Counter) -> None:
            seen.append((row.value, row.version, self._lock_taken_by_other(row.pk) if server else None))
            row.value += 1
            row.save()

        increment(counter)
        if server:
            # The first attempt held no lock; the second had locked the row and refreshed it.
            assert seen == [(0, 1, False), (10, 2, True)]
        else:
            # SQLite has no row locks (one writer at a time): the row is only refreshed.
            assert seen == [(0, 1, None), (10, 2, None)]
        row = Counter.objects.get()
        assert (row.value, row.version) == (11, 3)
        # No pause before the escalated attempt: it waits on the lock instead.
        assert self.pauses == [0.0]

    def test_a_call_like_a_refused_one_locks_in_its_first_attempt(self) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite has no row locks to find")
        hot, cold = (Counter.objects.create(name=name).pk for name in ("hot", "cold"))
        locked: list[tuple[int, bool]] = []
        calls = []

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def increment(pk: int) -> None:
            calls.append(pk)
            row = Counter.objects.get(pk=pk)
            locked.append((pk, self._lock_taken_by_other(pk)))
            if len(calls) == 1:
                _write_behind(pk)  # the very first attempt is refused
            row.value += 1
            row.save()

        increment(hot)
        assert locked == [(hot, False), (hot, True)]
        locked.clear()
        # The same arguments within a second: the refused row is locked before the function runs
        # (a write from another connection would now wait for this attempt to commit).
        increment(hot)
        assert locked == [(hot, True)]
        locked.clear()
        # Other arguments: optimistic as ever.
        increment(cold)
        assert locked == [(cold, False)]
        assert Counter.objects.get(pk=hot).value == 12
        assert Counter.objects.get(pk=cold).value == 1

    def _hot_call(
        self, read: Callable[[int], Counter], probe: Callable[[int], bool] | None = None
    ) -> tuple[int, list[str], list[bool]]:
        """Increment a new row twice through lock_on_retry, the function reading it with ``read(pk)``.

        The first attempt is refused (another connection writes behind it), so the second call
        is hot. Return the row's key, the statements of the hot call, and what ``probe(pk)``
        (default: another connection finds the row locked) said in each attempt.
        """
        if connection.vendor == "sqlite":
            pytest.skip("SQLite admits one writer: no other connection can write during an attempt")
        pk = Counter.objects.create(name="c").pk
        seen: list[bool] = []
        probe = probe or self._lock_taken_by_other

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def increment(pk: int) -> None:
            row = read(pk)
            seen.append(probe(pk))
            if len(seen) == 1:
                _write_behind(pk)
            row.value += 1
            row.save()

        increment(pk)
        with CaptureQueriesContext(connection) as queries:
            increment(pk)
        assert Counter.objects.values_list("value", "version").get(pk=pk) == (12, 4)
        return pk, [q["sql"] for q in queries.captured_queries if not _bookkeeping(q["sql"])], seen

    def test_a_hot_calls_own_read_of_the_row_is_the_lock(self) -> None:
        pk, sent, locked = self._hot_call(lambda pk: Counter.objects.get(pk=pk))
        # What select_for_update().get(pk=pk) and save() send: the read locks the row itself.
        assert [sql.split(None, 1)[0] for sql in sent] == ["SELECT", "UPDATE"]
        assert sent[0].endswith(connection.ops.for_update_sql())
        assert locked == [False, True, True]
        # Once the attempt is over, the same read locks nothing.
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            Counter.objects.get(pk=pk)
        assert "FOR UPDATE" not in queries.captured_queries[-1]["sql"]

    def test_a_hot_calls_read_by_key_and_other_columns_is_the_lock_too(self) -> None:
        _pk, sent, locked = self._hot_call(
            lambda pk: Counter.objects.filter(name="c", value__gte=0).get(pk=pk)
        )
        assert [sql.split(None, 1)[0] for sql in sent] == ["SELECT", "UPDATE"]
        assert sent[0].endswith(connection.ops.for_update_sql())
        assert locked == [False, True, True]

    def test_a_hot_call_reading_other_rows_first_locks_with_a_statement_of_its_own(self) -> None:
        others = [Counter.objects.create(name=f"o{i}").pk for i in range(2)]

        def read(pk: int) -> Counter:
            # A read of many rows, then one of the row by key and name: neither may lock more than the row.
            assert sum(Counter.objects.filter(name__startswith="o").values_list("value", flat=True)) == 0
            return Counter.objects.filter(name="c").get(pk=pk)

        pk, sent, others_free = self._hot_call(
            read, lambda _pk: all(not self._lock_taken_by_other(other) for other in others)
        )
        lock = " " + connection.ops.for_update_sql()
        table, key = connection.ops.quote_name(Counter._meta.db_table), connection.ops.quote_name("id")
        # The wrapper locks the row before the first statement, which reads other rows and locks nothing.
        assert sent[0] == f"SELECT {key} FROM {table} WHERE {key} IN ({pk}){lock}"
        assert [sql.split(None, 1)[0] for sql in sent] == ["SELECT", "SELECT", "SELECT", "UPDATE"]
        assert not sent[1].endswith(lock) and not sent[2].endswith(lock)
        assert others_free == [True, True, True]

    def test_a_hot_call_reading_through_locked_sends_what_select_for_update_does(self) -> None:
        # The first call is optimistic (locked() changes nothing), refused, then locked by the wrapper.
        pk, sent, locked = self._hot_call(lambda pk: retry_module.locked(Counter.objects).get(pk=pk))
        # The function's own read took the lock: no locking read of the wrapper's.
        assert [sql.split(None, 1)[0] for sql in sent] == ["SELECT", "UPDATE"]
        assert sent[0].endswith(connection.ops.for_update_sql())
        assert locked == [False, True, True]
        # Outside retry_on_conflict, locked() is the queryset as it is.
        assert "FOR UPDATE" not in str(retry_module.locked(Counter.objects.filter(pk=pk)).query)

    def test_a_wrapped_call_inside_a_hot_attempt_is_not_hot_itself(self) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite admits one writer: no other connection can write during an attempt")
        pk, other = (Counter.objects.create(name=name).pk for name in ("hot", "other"))
        inner_locked: list[bool] = []

        @retry_on_conflict(attempts=2)
        def inner() -> None:
            inner_locked.append(
                "FOR UPDATE" in str(retry_module.locked(Counter.objects.filter(pk=other)).query)
            )

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def increment(pk: int) -> None:
            row = Counter.objects.get(pk=pk)
            inner()
            if len(inner_locked) == 1:
                _write_behind(pk)
            row.value += 1
            row.save()

        increment(pk)
        increment(pk)  # hot: the wrapper locks the row; inner() runs as an ordinary call
        assert inner_locked == [False, False, False]
        assert Counter.objects.get(pk=pk).value == 12

    def test_rows_keyed_by_text_are_locked_and_a_gone_one_found(self) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite has no row locks to find")
        code = ExplicitPk.objects.create(code="c-1", name="a").code
        locked: list[bool] = []

        def taken() -> bool:
            def probe() -> None:
                with transaction.atomic():
                    list(ExplicitPk.objects.select_for_update(nowait=True).filter(pk=code))

            return isinstance(_in_other_connection(probe), DatabaseError)

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def rename(code: str) -> None:
            row = ExplicitPk.objects.get(pk=code)
            locked.append(taken())
            if len(locked) == 1:
                _in_other_connection(
                    lambda: ExplicitPk.objects.filter(pk=code).update(version=models.F("version") + 1)
                )
            row.name += "!"
            row.save()

        rename(code)
        rename(code)
        assert locked == [False, True, True]
        assert ExplicitPk.objects.values_list("name", "version").get() == ("a!!", 4)
        # Deleted while hot: the lock finds no row, and the function tells what it finds itself.
        ExplicitPk.objects.all().delete()
        with pytest.raises(ExplicitPk.DoesNotExist):
            rename(code)

    def test_a_call_after_the_hot_window_is_optimistic_again(self) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite has no row locks to find")
        pk = Counter.objects.create(name="c").pk
        locked: list[bool] = []

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def increment() -> None:
            row = Counter.objects.get(pk=pk)
            locked.append(self._lock_taken_by_other(pk))
            if len(locked) == 1:
                _write_behind(pk)
            row.value += 1
            row.save()

        increment()
        hot_for, HotRows.HOT_FOR = HotRows.HOT_FOR, 0.0
        try:
            increment()
        finally:
            HotRows.HOT_FOR = hot_for
        assert locked == [False, True, False]
        assert Counter.objects.get(pk=pk).value == 12

    def test_the_refused_instance_is_refreshed_under_the_lock(self) -> None:
        counter = Counter.objects.create(name="c")
        _write_behind(counter.pk)

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def add(row: Counter) -> None:
            row.value += 1
            row.save()

        add(counter)
        assert (counter.value, counter.version) == (11, 3)
        assert Counter.objects.values_list("value", "version").get() == (11, 3)

    def test_without_refresh_the_row_is_locked_but_not_refreshed(self) -> None:
        counter = Counter.objects.create(name="c")
        _write_behind(counter.pk)
        calls = []

        @retry_on_conflict(attempts=2, lock_on_retry=True, refresh=False)
        def touch(row: Counter) -> None:
            calls.append(row.version)
            row.save()

        with pytest.raises(RecordModifiedError) as info:
            touch(counter)
        assert calls == [1, 1]
        assert (info.value.version, info.value.db_version) == (1, 2)

    def test_a_row_deleted_before_the_lock_ends_the_retries(self) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite admits one writer: no other connection can write during an attempt")
        counter = Counter.objects.create(name="c")
        calls = []

        @retry_on_conflict(attempts=5, lock_on_retry=True)
        def add(row: Counter) -> None:
            calls.append(1)
            if len(calls) == 1:
                _write_behind(row.pk)
            row.value += 1
            row.save()
            if len(calls) == 1:
                # Not reached: the save above is refused.
                raise AssertionError

        def delete_after_first_conflict(**kwargs: Any) -> None:
            _in_other_connection(lambda: Counter.objects.filter(pk=counter.pk).delete())

        conflict_detected.connect(delete_after_first_conflict, sender=Counter, weak=False)
        try:
            with pytest.raises(RecordModifiedError) as info:
                add(counter)
        finally:
            conflict_detected.disconnect(delete_after_first_conflict, sender=Counter)
        assert calls == [1]
        assert info.value.target is counter
        assert not Counter.objects.exists()

    def test_an_async_def_function_cannot_lock(self) -> None:
        async def add() -> None: ...

        with pytest.raises(TypeError, match="acall"):
            retry_on_conflict(add, lock_on_retry=True)

    def test_acall_locks_too(self) -> None:
        counter = Counter.objects.create(name="c")
        _write_behind(counter.pk)
        calls = []

        def add(row: Counter) -> None:
            calls.append(row.version)
            row.value += 1
            row.save()

        async def run() -> None:
            try:
                await retry_on_conflict(add, attempts=2, lock_on_retry=True).acall(counter)
            finally:
                # The attempts ran in asgiref's thread for sync code: close its connection there,
                # or the test database cannot be dropped at the end of the run.
                await sync_to_async(connections.close_all)()

        asyncio.run(run())
        assert calls == [1, 2]
        assert Counter.objects.values_list("value", "version").get() == (11, 3)


@pytest.mark.race
class LockOnRetryRaceTests(TransactionTestCase):
    """Real processes, each with its own connection, on one hot row."""

    def test_race_processes_never_refused_twice_and_lose_no_increment(self) -> None:
        pk = Counter.objects.create(name="hot").pk
        procs, increments = 3, 30
        ctx = multiprocessing.get_context("spawn")
        # The children start together once all are set up (a busy machine starts them far apart).
        start = ctx.Barrier(procs, timeout=CHILD_WAIT)
        results = ctx.Queue()
        children = [
            ctx.Process(
                target=workers.increment_locking_on_retry,
                args=(connection.settings_dict["NAME"], pk, increments, start, results),
                daemon=True,
            )
            for _ in range(procs)
        ]
        for child in children:
            child.start()
        connection.close()
        reports = []
        try:
            for _ in children:
                reports.append(results.get(timeout=CHILD_WAIT))
        except queue.Empty:
            pytest.fail(f"workers exited with {[c.exitcode for c in children]}")
        finally:
            for child in children:
                child.join(CHILD_WAIT)
        # Two attempts each: an escalated attempt refused again would have raised.
        assert [failure for _conflicts, failure in reports] == [None] * procs
        row = Counter.objects.get(pk=pk)
        assert (row.value, row.version) == (procs * increments, 1 + procs * increments)
        if connection.vendor != "sqlite":
            # The processes collided (else nothing was escalated)...
            assert sum(conflicts for conflicts, _failure in reports) > 0
        # ...and at most once per increment: the locked attempt always won.
        assert all(conflicts <= increments for conflicts, _failure in reports)
