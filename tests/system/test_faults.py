"""Faults in the middle of a save: rolled-back transactions, killed workers, killed connections, timeouts.

Whatever fails, three things must hold: no acknowledged write is lost, no
version that was never committed survives (in the row or on the instance, where
it would let a stale save through later), and the survivors' next saves work.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction

from concurrency.api import get_revision_of_object
from concurrency.exceptions import RecordModifiedError
from tests.demo.models import Counter
from tests.support import workers
from tests.support.races import Background

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


def _row(pk: int) -> tuple[int, int]:
    row = Counter.objects.get(pk=pk)
    return row.value, row.version


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _session_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()"
        )
        return int(cursor.fetchone()[0])


def _is_waiting_for_lock(session: int) -> bool:
    """Return whether the server session ``session`` is blocked on a row lock."""
    with connections["default"].cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [session])
            row = cursor.fetchone()
            return bool(row) and row[0] == "Lock"
        cursor.execute(
            "SELECT trx_state FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = %s", [session]
        )
        row = cursor.fetchone()
        return bool(row) and row[0] == "LOCK WAIT"


def _terminate(session: int) -> None:
    """Have the server end the session ``session``, as an administrator or a failover would."""
    with connections["default"].cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", [session])
        else:
            cursor.execute(f"KILL {int(session)}")


class _Holder:
    """A thread that saves a row inside a transaction and keeps it locked until told."""

    def __init__(self, pk: int, add: int) -> None:
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = Background(lambda: self._hold(pk, add))
        self.thread.start()
        assert self.locked.wait(WAIT)

    def _hold(self, pk: int, add: int) -> Counter:
        with transaction.atomic():
            row = Counter.objects.get(pk=pk)
            row.value += add
            row.save()
            self.locked.set()
            assert self.release.wait(WAIT)
        return row

    def commit(self) -> Counter:
        self.release.set()
        result = self.thread.outcome()
        assert isinstance(result, Counter), result
        return result


# --- Rolled-back transactions -------------------------------------------------


class TestRolledBackTransaction:
    def test_version_of_rolled_back_save_is_not_reused_to_overwrite_a_later_write(self) -> None:
        pk = Counter.objects.create(name="c").pk
        stale = Counter.objects.get(pk=pk)
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            stale.value = 10
            stale.save()
            1 / 0  # noqa: B018 - the rest of the transaction fails
        other = Counter.objects.get(pk=pk)
        other.value = 5
        other.save()
        assert other.version == 2
        stale.value = 10
        with pytest.raises(RecordModifiedError):
            stale.save()
        assert _row(pk) == (5, 2)
        assert stale.version == 1

    def test_instance_saves_again_after_its_transaction_rolled_back(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            row.value = 1
            row.save()
            row.value = 2
            row.save()
            assert row.version == 3
            1 / 0  # noqa: B018
        assert _row(pk) == (0, 1)
        row.value = 7
        row.save()
        assert row.version == 2
        assert _row(pk) == (7, 2)

    def test_rolled_back_savepoint_gives_back_only_its_own_versions(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with transaction.atomic():
            row.value = 1
            row.save()
            with pytest.raises(ZeroDivisionError), transaction.atomic():
                row.value = 2
                row.save()
                assert row.version == 3
                1 / 0  # noqa: B018
            row.value = 3
            row.save()
            assert row.version == 3
        assert _row(pk) == (3, 3)
        row.value = 4
        row.save()
        assert (row.version, _row(pk)) == (4, (4, 4))

    def test_committed_versions_stay(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with transaction.atomic():
            row.value = 1
            row.save()
        with transaction.atomic():
            row.value = 2
            row.save()
        assert (row.version, _row(pk)) == (3, (2, 3))

    def test_stale_delete_after_rolled_back_save_is_refused(self) -> None:
        pk = Counter.objects.create(name="c").pk
        stale = Counter.objects.get(pk=pk)
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            stale.save()
            1 / 0  # noqa: B018
        Counter.objects.get(pk=pk).save()
        with pytest.raises(RecordModifiedError):
            stale.delete()
        assert Counter.objects.filter(pk=pk).exists()

    def test_copy_pickled_in_open_transaction_does_not_trust_its_version(self) -> None:
        # When it was pickled nobody knew whether the write would commit: the
        # copy holds the version from before it, and a false conflict is the
        # worst that can happen.
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with transaction.atomic():
            row.save()
            copy = pickle.loads(pickle.dumps(row))
        assert (row.version, copy.version) == (2, 1)
        copy.value = 5
        with pytest.raises(RecordModifiedError):
            copy.save()
        assert _row(pk) == (0, 2)

    def test_copy_pickled_after_commit_trusts_its_version(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with transaction.atomic():
            row.save()
        copy = pickle.loads(pickle.dumps(row))
        assert copy.version == 2
        copy.save()
        assert _row(pk) == (0, 3)


# --- A worker process killed with SIGKILL -------------------------------------
# Workers are spawned, not forked: forking this multi-threaded process can
# deadlock the child on a lock another thread held at fork time. A spawned
# child starts Django itself (tests/support/workers.py), which takes seconds on a busy
# machine, hence the generous bound on waits that include a child's start.

CHILD_WAIT = 180.0


def _spawn(target: Callable[..., None], *args: Any) -> Any:
    ctx = multiprocessing.get_context("spawn")
    return ctx.Process(target=target, args=(connection.settings_dict["NAME"], *args), daemon=True)


class TestKilledWorker:
    def test_worker_killed_after_update_before_commit_loses_nothing(self) -> None:
        pk = Counter.objects.create(name="c").pk
        survivor = Counter.objects.get(pk=pk)
        updated = multiprocessing.get_context("spawn").Event()
        child = _spawn(workers.die_after_update, pk, updated, CHILD_WAIT * 2)
        child.start()
        try:
            assert updated.wait(CHILD_WAIT), f"the worker did not update (exit code {child.exitcode})"
            assert _row(pk) == (0, 1)  # not committed: invisible
            survivor.value += 1
            saver = Background(survivor.save)
            saver.start()
            time.sleep(0.3)  # let the survivor block on the dying worker's lock
            os.kill(child.pid, signal.SIGKILL)
            child.join(CHILD_WAIT)
            assert child.exitcode == -signal.SIGKILL
            assert saver.outcome() is None
        finally:
            if child.is_alive():
                child.kill()
                child.join(CHILD_WAIT)
        assert survivor.version == 2
        assert _row(pk) == (1, 2)
        survivor.value += 1
        survivor.save()
        assert _row(pk) == (2, 3)

    def test_workers_killed_while_incrementing_lose_no_acknowledged_increment(self) -> None:
        pk = Counter.objects.create(name="c").pk
        # Without a lock: each worker writes its own slot, and a worker killed while holding
        # the array's lock would leave every later read of it waiting forever.
        acknowledged = multiprocessing.get_context("spawn").Array("i", 3, lock=False)
        children = [_spawn(workers.hammer, pk, acknowledged, n) for n in range(3)]
        for child in children:
            child.start()
        try:
            _wait_for(
                lambda: min(acknowledged) >= 5 or any(c.exitcode is not None for c in children),
                "every worker to commit",
                CHILD_WAIT,
            )
            assert all(c.exitcode is None for c in children), [c.exitcode for c in children]
            for child in children:
                time.sleep(0.05)
                os.kill(child.pid, signal.SIGKILL)
                child.join(CHILD_WAIT)
                assert child.exitcode == -signal.SIGKILL
        finally:
            for child in children:
                if child.is_alive():
                    child.kill()
                    child.join(CHILD_WAIT)
        value, version = _row(pk)
        total = sum(acknowledged)
        # A worker may die between its COMMIT and counting it: at most one in flight each.
        assert total <= value <= total + len(children)
        assert version == value + 1
        row = Counter.objects.get(pk=pk)
        row.value += 1
        row.save()
        assert _row(pk) == (value + 1, version + 1)


# --- A connection ended by the server -----------------------------------------


@pytest.mark.usefixtures("_server_vendor")
class TestTerminatedConnection:
    def test_terminated_while_waiting_for_the_row_lock(self) -> None:
        pk = Counter.objects.create(name="c").pk
        victim = Counter.objects.get(pk=pk)
        holder = _Holder(pk, add=10)
        session: list[int] = []

        def save() -> None:
            session.append(_session_id())
            victim.value += 1
            victim.save()

        saver = Background(save)
        saver.start()
        _wait_for(lambda: bool(session) and _is_waiting_for_lock(session[0]), "the save to block")
        _terminate(session[0])
        assert isinstance(saver.outcome(), DatabaseError)
        assert victim.version == 1
        assert holder.commit().version == 2
        assert _row(pk) == (10, 2)
        # The survivor's next save is judged on what it read: stale, so refused.
        with pytest.raises(RecordModifiedError):
            victim.save()
        victim.refresh_from_db()
        victim.value += 1
        victim.save()
        assert _row(pk) == (11, 3)

    def test_terminated_after_update_before_commit(self) -> None:
        pk = Counter.objects.create(name="c").pk
        victim = Counter.objects.get(pk=pk)
        updated, go = threading.Event(), threading.Event()
        session: list[int] = []

        def save() -> None:
            session.append(_session_id())
            with transaction.atomic():
                victim.value += 1
                victim.save()
                updated.set()
                assert go.wait(WAIT)

        saver = Background(save)
        saver.start()
        assert updated.wait(WAIT)
        _terminate(session[0])
        go.set()
        assert isinstance(saver.outcome(), DatabaseError)
        assert _row(pk) == (0, 1)
        # Nobody else wrote: the instance saves again, at the version it really has.
        victim.save()
        assert victim.version == 2
        assert _row(pk) == (1, 2)

    def test_terminated_after_update_then_someone_else_writes(self) -> None:
        pk = Counter.objects.create(name="c").pk
        victim = Counter.objects.get(pk=pk)
        updated, go = threading.Event(), threading.Event()
        session: list[int] = []

        def save() -> None:
            session.append(_session_id())
            with transaction.atomic():
                victim.value += 1
                victim.save()
                updated.set()
                assert go.wait(WAIT)

        saver = Background(save)
        saver.start()
        assert updated.wait(WAIT)
        _terminate(session[0])
        go.set()
        assert isinstance(saver.outcome(), DatabaseError)
        other = Counter.objects.get(pk=pk)
        other.value = 50
        other.save()
        with pytest.raises(RecordModifiedError):
            victim.save()
        assert _row(pk) == (50, 2)
        assert get_revision_of_object(victim) == 1


# --- Lock and statement timeouts ----------------------------------------------


@pytest.mark.usefixtures("_server_vendor")
class TestTimeout:
    def _short_lock_timeout(self) -> None:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET lock_timeout = '300ms'")
            else:
                cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")

    def test_lock_wait_timeout_changes_nothing_and_the_next_save_works(self) -> None:
        pk = Counter.objects.create(name="c").pk
        victim = Counter.objects.get(pk=pk)
        holder = _Holder(pk, add=10)

        def save() -> None:
            self._short_lock_timeout()
            victim.value += 1
            victim.save()

        assert isinstance(Background(save).finish(), DatabaseError)
        assert victim.version == 1
        assert holder.commit().version == 2
        assert _row(pk) == (10, 2)
        with pytest.raises(RecordModifiedError):
            victim.save()
        victim.refresh_from_db()
        victim.value += 1
        victim.save()
        assert _row(pk) == (11, 3)

    def test_lock_wait_timeout_inside_a_transaction_rolls_it_all_back(self) -> None:
        pk = Counter.objects.create(name="c").pk
        other_pk = Counter.objects.create(name="d").pk
        victim = Counter.objects.get(pk=pk)
        holder = _Holder(pk, add=10)

        def save() -> None:
            self._short_lock_timeout()
            with transaction.atomic():
                first = Counter.objects.get(pk=other_pk)
                first.value = 99
                first.save()
                victim.value += 1
                victim.save()

        assert isinstance(Background(save).finish(), DatabaseError)
        holder.commit()
        assert _row(other_pk) == (0, 1)
        assert _row(pk) == (10, 2)

    @pytest.mark.postgresql
    def test_statement_timeout_changes_nothing(self) -> None:
        pk = Counter.objects.create(name="c").pk
        victim = Counter.objects.get(pk=pk)
        holder = _Holder(pk, add=10)

        def save() -> None:
            with connection.cursor() as cursor:
                cursor.execute("SET statement_timeout = '300ms'")
            victim.value += 1
            victim.save()

        assert isinstance(Background(save).finish(), DatabaseError)
        assert victim.version == 1
        holder.commit()
        assert _row(pk) == (10, 2)

    @pytest.mark.mysql
    def test_max_statement_time_changes_nothing(self) -> None:
        pk = Counter.objects.create(name="c").pk
        victim = Counter.objects.get(pk=pk)
        holder = _Holder(pk, add=10)

        def save() -> None:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION max_statement_time = 0.3")
            victim.value += 1
            victim.save()

        assert isinstance(Background(save).finish(), DatabaseError)
        assert victim.version == 1
        holder.commit()
        assert _row(pk) == (10, 2)


@pytest.fixture
def _server_vendor() -> None:
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("needs a database server (PostgreSQL or MariaDB); CONCURRENCY_DB=sqlite")


def test_saves_in_one_savepoint_share_one_commit_hook() -> None:
    pk = Counter.objects.create(name="c").pk
    row = Counter.objects.get(pk=pk)
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        for value in range(50):
            row.value = value
            row.save()
        assert len(connection.run_on_commit) == 1
        1 / 0  # noqa: B018
    row.save()
    assert (row.version, _row(pk)) == (2, (49, 2))
