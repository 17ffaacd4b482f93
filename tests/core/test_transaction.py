"""concurrency.transaction.atomic: a transaction the database rolled back for a concurrent write."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError, OperationalError, connections, transaction
from django.test import TestCase, TransactionTestCase

from concurrency.exceptions import RecordModifiedError, WriteConflictError
from concurrency.retry import retry_on_conflict
from concurrency.transaction import atomic, is_write_conflict
from tests.demo.models import Counter
from tests.support.races import run_together

WAIT = 60

needs_server = pytest.mark.skipif(
    settings.VENDOR == "sqlite", reason="SQLite admits one writer at a time: no deadlock to provoke"
)


class PassThroughTests(TestCase):
    def test_an_ordinary_conflict_is_raised_as_it_is(self) -> None:
        counter = Counter.objects.create(name="a")
        stale = Counter.objects.get(pk=counter.pk)
        counter.save()
        with pytest.raises(RecordModifiedError) as caught, atomic():
            stale.save()
        assert type(caught.value) is RecordModifiedError
        assert (caught.value.version, caught.value.db_version) == (1, 2)

    def test_other_database_errors_are_raised_as_they_are(self) -> None:
        Counter.objects.create(name="taken")
        with pytest.raises(IntegrityError), atomic():
            Counter.objects.create(name="taken")
        assert Counter.objects.count() == 1

    def test_it_is_djangos_atomic_otherwise(self) -> None:
        @atomic
        def create() -> None:
            assert connections["default"].in_atomic_block
            Counter.objects.create(name="decorated")

        create()
        with atomic(using="default", savepoint=False):
            Counter.objects.create(name="block")
        assert sorted(Counter.objects.values_list("name", flat=True)) == ["block", "decorated"]


@needs_server
@pytest.mark.race
class DeadlockTests(TransactionTestCase):
    """Two transactions update two rows in opposite order: the database rolls one back."""

    def setUp(self) -> None:
        self.rows = [Counter.objects.create(name="a").pk, Counter.objects.create(name="b").pk]

    def crossed(self, wrap: Any) -> list[Any]:
        barrier = threading.Barrier(2)

        def work(n: int) -> Any:
            first, second = self.rows if n == 0 else self.rows[::-1]
            calls = []

            def body() -> None:
                calls.append(1)
                row = Counter.objects.get(pk=first)
                row.value += 1
                row.save()
                if len(calls) == 1:
                    # Only the first attempts meet here; a retry runs on its own.
                    barrier.wait(WAIT)
                other = Counter.objects.get(pk=second)
                other.value += 1
                other.save()

            return wrap(body)

        return run_together(lambda: work(0), lambda: work(1), wait=WAIT)

    def test_djangos_atomic_gives_the_drivers_error(self) -> None:
        def in_django_atomic(body: Any) -> None:
            with transaction.atomic():
                body()

        results = self.crossed(in_django_atomic)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], OperationalError)
        assert is_write_conflict(errors[0])

    def test_the_rolled_back_transaction_is_a_write_conflict(self) -> None:
        def in_atomic(body: Any) -> None:
            with atomic():
                body()

        results = self.crossed(in_atomic)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        error = errors[0]
        assert isinstance(error, WriteConflictError)
        assert isinstance(error.__cause__, OperationalError)
        # The loser had saved its first row (and tried its second) before it was rolled back.
        loser = results.index(error)
        assert error.target.pk == self.rows[loser]
        assert error.version == 1
        assert error.db_version in (1, 2)  # the winner may not have committed yet
        assert [obj.pk for obj in error.objects] == [self.rows[loser], self.rows[1 - loser]]
        # Nothing of the loser's transaction was written; all of the winner's was.
        assert sorted(Counter.objects.values_list("value", "version")) == [(1, 2), (1, 2)]

    def test_retry_on_conflict_runs_the_rolled_back_transaction_again(self) -> None:
        attempts = []

        def retried(body: Any) -> None:
            @retry_on_conflict(attempts=5, delay=0.01)
            def run() -> None:
                attempts.append(1)
                body()

            run()

        results = self.crossed(retried)
        assert results == [None, None]
        # The loser ran again (and once more if its re-read beat the winner's COMMIT:
        # then its UPDATE matched no row, an ordinary conflict).
        assert len(attempts) >= 3
        assert sorted(Counter.objects.values_list("value", "version")) == [(2, 3), (2, 3)]

    def test_one_decorated_function_in_both_threads_reports_the_write_conflict(self) -> None:
        @atomic
        def shared(body: Any) -> None:
            body()

        results = self.crossed(shared)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], WriteConflictError)
        assert sorted(Counter.objects.values_list("value", "version")) == [(1, 2), (1, 2)]

    def test_a_decorated_function_calling_itself_reports_the_write_conflict(self) -> None:
        def recursive(body: Any) -> None:
            # A decorated function of each thread's own: only the recursion is shared.
            @atomic
            def descend(depth: int) -> None:
                if depth:
                    descend(depth - 1)
                else:
                    body()

            descend(2)

        results = self.crossed(recursive)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], WriteConflictError)
        assert isinstance(errors[0].__cause__, OperationalError)
        assert sorted(Counter.objects.values_list("value", "version")) == [(1, 2), (1, 2)]


@pytest.mark.skipif(
    settings.VENDOR != "postgresql", reason="REPEATABLE READ refuses a stale write on PostgreSQL"
)
class SerializationFailureTests(TransactionTestCase):
    def test_a_serialization_failure_in_a_decorated_function_is_a_write_conflict(self) -> None:
        counter = Counter.objects.create(name="a")

        def other_user_writes() -> None:
            Counter.objects.filter(pk=counter.pk).update(value=5)

        @atomic
        def increment() -> None:
            with connections["default"].cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = Counter.objects.get(pk=counter.pk)  # the snapshot is taken here
            run_together(other_user_writes, wait=WAIT)
            row.value += 1
            row.save()

        with pytest.raises(WriteConflictError) as caught:
            increment()
        assert isinstance(caught.value.__cause__, OperationalError)
        assert Counter.objects.values_list("value", flat=True).get(pk=counter.pk) == 5
        assert not connections["default"].in_atomic_block


@pytest.mark.race
class DecoratorStateTests(TransactionTestCase):
    """One decorated function, entered by two threads and by itself: no call leaves state behind."""

    def test_two_threads_in_one_decorated_function_both_commit_and_go_on(self) -> None:
        first_inside = threading.Event()
        second_entered = threading.Event()

        @atomic
        def create(name: str, wait: bool) -> None:
            Counter.objects.create(name=name)
            if wait:
                first_inside.set()
                assert second_entered.wait(WAIT)

        def signal_first_statement(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            # BEGIN IMMEDIATE on SQLite (which then waits for the first thread), the INSERT elsewhere.
            second_entered.set()
            return execute(sql, params, many, context)

        def run(name: str) -> str:
            connection = connections["default"]
            if name == "first":
                create(name, True)
            else:
                assert first_inside.wait(WAIT)
                with connection.execute_wrapper(signal_first_statement):
                    create(name, False)
            # Out of the block: the next write commits on its own.
            assert not connection.in_atomic_block
            Counter.objects.create(name=f"{name} after")
            return "ok"

        first, second = run_together(lambda: run("first"), lambda: run("second"), wait=WAIT)
        outcomes = {"first": first, "second": second}
        assert outcomes == {"first": "ok", "second": "ok"}
        assert sorted(Counter.objects.values_list("name", flat=True)) == [
            "first",
            "first after",
            "second",
            "second after",
        ]

    def test_a_decorated_function_calling_itself_commits_at_its_outermost_call(self) -> None:
        inside: list[bool] = []

        @atomic
        def descend(depth: int) -> None:
            Counter.objects.create(name=f"depth {depth}")
            inside.append(connections["default"].in_atomic_block)
            if depth:
                descend(depth - 1)

        descend(2)
        assert inside == [True, True, True]
        assert not connections["default"].in_atomic_block
        assert sorted(Counter.objects.values_list("name", flat=True)) == ["depth 0", "depth 1", "depth 2"]
        # The same function again, and a failure inside it, leave nothing open either.
        with pytest.raises(IntegrityError):
            descend(0)
        assert not connections["default"].in_atomic_block
        assert Counter.objects.count() == 3
