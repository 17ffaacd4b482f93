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
class DeadlockTests(TransactionTestCase):
    """Two transactions update two rows in opposite order: the database rolls one back."""

    def setUp(self) -> None:
        self.rows = [Counter.objects.create(name="a").pk, Counter.objects.create(name="b").pk]

    def crossed(self, wrap: Any) -> list[Any]:
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def work(n: int) -> None:
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

            try:
                results[n] = wrap(body)
            except BaseException as exc:
                results[n] = exc
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
            assert not thread.is_alive()
        return results

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
