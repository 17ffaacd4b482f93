"""concurrency.api.verify_unchanged: guarding the rows a decision was read from."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext

from concurrency.api import disable_concurrency, retry_on_conflict, verify_unchanged
from concurrency.exceptions import RecordDeletedError, RecordModifiedError, VersionNotLoadedError
from concurrency.signals import conflict_detected
from tests.demo.models import Article, Doctor, ExplicitPk, PlainCounter, TriggerRow, UUIDPk
from tests.support.races import run_together

WAIT = 30  # seconds: generous, so a loaded machine does not fail the race tests


class NotEnoughDoctorsError(Exception):
    pass


def go_off_call(pk: int, *, guard: bool = True, after_read: Callable[[], Any] = lambda: None) -> None:
    """The documented write-skew example: leave the shift only if someone else stays on call."""
    with transaction.atomic():
        doctors = list(Doctor.objects.filter(shift="night", on_call=True))
        after_read()
        if guard:
            verify_unchanged(*doctors)
        if len(doctors) < 2:
            raise NotEnoughDoctorsError
        me = next(doctor for doctor in doctors if doctor.pk == pk)
        me.on_call = False
        me.save()


def _bump(obj: Any) -> None:
    """Change the row of ``obj`` behind its back (a write from elsewhere)."""
    type(obj).objects.filter(pk=obj.pk).update(version=F("version") + 1)


class VerifyTests(TestCase):
    def setUp(self) -> None:
        self.alice = Doctor.objects.create(name="Alice", shift="night")
        self.bob = Doctor.objects.create(name="Bob", shift="night")

    def test_current_rows_pass_with_one_statement_per_model(self) -> None:
        article = Article.objects.create(title="a")
        with transaction.atomic(), self.assertNumQueries(1):
            verify_unchanged(self.alice, self.bob)
        with transaction.atomic(), self.assertNumQueries(2):
            verify_unchanged(self.alice, article, self.bob)
        # Nothing written: the versions stay.
        assert list(Doctor.objects.values_list("version", flat=True)) == [1, 1]
        assert self.alice.version == 1

    def test_a_changed_row_raises_naming_it(self) -> None:
        _bump(self.bob)
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            verify_unchanged(self.alice, self.bob)
        error = info.value
        assert not isinstance(error, RecordDeletedError)
        assert error.target is self.bob
        assert (error.model, error.pk, error.version, error.db_version) == (Doctor, self.bob.pk, 1, 2)
        assert str(error) == f"demo.Doctor {self.bob.pk} changed after it was read (version 1, now 2)."

    def test_a_deleted_row_raises_record_deleted(self) -> None:
        Doctor.objects.filter(pk=self.alice.pk).delete()
        with pytest.raises(RecordDeletedError) as info, transaction.atomic():
            verify_unchanged(self.bob, self.alice)
        assert info.value.target is self.alice
        assert info.value.db_version is None
        assert str(info.value) == f"demo.Doctor {self.alice.pk} was deleted after it was read at version 1."

    def test_the_callback_hears_of_the_refused_row(self) -> None:
        from django.test import override_settings

        from tests.core.test_save import calls

        calls.clear()
        _bump(self.bob)
        with (
            override_settings(CONCURRENCY_CALLBACK="tests.core.test_save.returning_true"),
            pytest.raises(RecordModifiedError) as info,
            transaction.atomic(),
        ):
            verify_unchanged(self.alice, self.bob)
        assert calls == [self.bob]
        assert info.value.target is self.bob

    def test_the_first_stale_instance_in_argument_order_is_named(self) -> None:
        _bump(self.alice)
        _bump(self.bob)
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            verify_unchanged(self.bob, self.alice)
        assert info.value.target is self.bob

    def test_two_copies_of_one_row_at_different_versions_are_refused(self) -> None:
        stale = Doctor.objects.get(pk=self.alice.pk)
        self.alice.save()
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            verify_unchanged(self.alice, stale)
        assert info.value.target is stale

    def test_conflict_detected_is_sent(self) -> None:
        seen: list[dict[str, Any]] = []

        def receiver(**kwargs: Any) -> None:
            seen.append(kwargs)

        conflict_detected.connect(receiver)
        self.addCleanup(conflict_detected.disconnect, receiver)
        _bump(self.bob)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            verify_unchanged(self.bob)
        assert [(s["instance"], s["version"], s["db_version"], s["deleted"]) for s in seen] == [
            (self.bob, 1, 2, False)
        ]

    def test_unversioned_and_unsaved_instances_are_refused_clearly(self) -> None:
        with pytest.raises(TypeError, match="not under concurrency control"):
            verify_unchanged(PlainCounter.objects.create(name="x"))
        with pytest.raises(ValueError, match="has not been saved"):
            verify_unchanged(Doctor(name="Carol"))

    def test_disable_concurrency_skips_the_check(self) -> None:
        _bump(self.bob)
        with transaction.atomic(), disable_concurrency(Doctor), self.assertNumQueries(0):
            verify_unchanged(self.bob)

    def test_a_version_rolled_back_with_its_transaction_is_not_trusted(self) -> None:
        with transaction.atomic():
            with pytest.raises(KeyError), transaction.atomic():
                self.alice.save()
                raise KeyError("rolled back")
            # The instance was given back the version the row still has.
            verify_unchanged(self.alice)
            assert self.alice.version == 1

    def test_context_manager_verifies_at_exit_and_rolls_the_block_back(self) -> None:
        carol = Doctor.objects.create(name="Carol", shift="day")
        with pytest.raises(RecordModifiedError) as info, verify_unchanged(self.alice, self.bob):
            carol.on_call = False
            carol.save()
            _bump(self.bob)  # someone else's write, committed before ours
        assert info.value.target is self.bob
        assert Doctor.objects.get(pk=carol.pk).on_call is True

    def test_context_manager_commits_the_block_when_nothing_changed(self) -> None:
        carol = Doctor.objects.create(name="Carol", shift="day")
        with verify_unchanged(self.alice, self.bob):
            carol.on_call = False
            carol.save()
        assert Doctor.objects.get(pk=carol.pk).on_call is False

    def test_context_manager_leaves_the_blocks_own_exception_alone(self) -> None:
        carol = Doctor.objects.create(name="Carol", shift="day")
        with pytest.raises(KeyError), verify_unchanged(self.alice):
            carol.on_call = False
            carol.save()
            raise KeyError("mine")
        assert Doctor.objects.get(pk=carol.pk).on_call is True

    def test_retry_on_conflict_retries_with_a_fresh_read(self) -> None:
        attempts: list[int] = []

        @retry_on_conflict(attempts=3, delay=0)
        def decide() -> None:
            doctors = list(Doctor.objects.filter(on_call=True))
            if not attempts:
                _bump(self.bob)  # changed between our read and our check
            attempts.append(len(doctors))
            verify_unchanged(*doctors)
            carol = Doctor.objects.create(name="Carol", shift="night")
            assert carol.pk

        decide()
        assert attempts == [2, 2]
        assert Doctor.objects.filter(name="Carol").count() == 1

    def test_rows_keyed_by_uuid_or_text_are_verified(self) -> None:
        for rows in (
            [UUIDPk.objects.create(name=name) for name in ("a", "b")],
            [ExplicitPk.objects.create(code=f"code-{name}", name=name) for name in ("a", "b")],
        ):
            with self.subTest(type(rows[0]).__name__):
                with transaction.atomic():
                    verify_unchanged(*rows)
                _bump(rows[1])
                with pytest.raises(RecordModifiedError) as info, transaction.atomic():
                    verify_unchanged(*rows)
                assert info.value.target is rows[1]
                assert (info.value.version, info.value.db_version) == (1, 2)

    def test_integer_keys_given_as_text_are_verified_as_the_row_they_name(self) -> None:
        named = Doctor(pk=str(self.bob.pk), name="Bob", shift="night", version=1)
        named._state.adding, named._state.db = False, "default"
        with transaction.atomic():
            verify_unchanged(self.alice, named)
        _bump(self.bob)
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            verify_unchanged(self.alice, named)
        assert info.value.target is named
        assert (info.value.version, info.value.db_version) == (1, 2)

    def test_a_key_no_integer_column_holds_is_a_deleted_row_not_an_error(self) -> None:
        # PostgreSQL reads many integer keys as one bigint[] constant; a key outside it
        # names no row, and is reported as a row that is gone.
        for key in (2**63, -(2**63) - 1, 10**30):
            ghost = Doctor(pk=key, name="Ghost", shift="night", version=1)
            ghost._state.adding, ghost._state.db = False, "default"
            with pytest.raises(RecordDeletedError) as info, transaction.atomic():
                verify_unchanged(self.alice, ghost, self.bob)
            assert info.value.target is ghost
        assert list(Doctor.objects.values_list("version", flat=True)) == [1, 1]

    def test_more_rows_than_sqlite_binds_parameters_for_are_one_statement(self) -> None:
        # SQLite before 3.32 binds at most 999 parameters; the keys are sent as digits.
        Doctor.objects.bulk_create(Doctor(name=f"d{i}", shift="day") for i in range(1200))
        doctors = list(Doctor.objects.all())
        assert len(doctors) == 1202
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            verify_unchanged(*doctors)
        statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
        # (SQLite's write lock is the test's: bulk_create took it.)
        assert [sql.split(None, 1)[0] for sql in statements] == ["SELECT"]
        assert str(doctors[-1].pk) in statements[0]
        Doctor.objects.filter(pk=doctors[600].pk).delete()
        with pytest.raises(RecordDeletedError) as info, transaction.atomic():
            verify_unchanged(*doctors)
        assert info.value.target is doctors[600]
        assert set(Doctor.objects.values_list("version", flat=True)) == {1}

    def test_a_row_loaded_without_its_version_is_refused_as_its_save_is(self) -> None:
        def late() -> Doctor:
            doctor = Doctor.objects.only("name").get(pk=self.bob.pk)
            # Loaded now, not with the row.
            assert doctor.version == Doctor.objects.values_list("version", flat=True).get(pk=self.bob.pk)
            return doctor

        loads = {
            "only": lambda: Doctor.objects.only("name").get(pk=self.bob.pk),
            "defer": lambda: Doctor.objects.defer("version").get(pk=self.bob.pk),
            "loaded late": late,
        }
        for name, load in loads.items():
            with self.subTest(name):
                partial = load()
                _bump(self.bob)  # the row changed after the partial read
                with pytest.raises(VersionNotLoadedError) as saved, transaction.atomic():
                    partial.save()
                with pytest.raises(VersionNotLoadedError) as verified, transaction.atomic():
                    verify_unchanged(self.alice, partial)
                assert str(verified.value) == str(saved.value)
                with pytest.raises(VersionNotLoadedError), verify_unchanged(partial):
                    pass

    def test_the_write_skew_example_refuses_the_last_doctor(self) -> None:
        go_off_call(self.alice.pk)
        with pytest.raises(NotEnoughDoctorsError):
            go_off_call(self.bob.pk)
        assert list(Doctor.objects.values_list("name", "on_call")) == [("Alice", False), ("Bob", True)]


class NoWriteTests(TestCase):
    """Verifying checks and holds the rows; it never writes them."""

    def test_a_trigger_versioned_row_keeps_its_version_and_its_holder_saves(self) -> None:
        row = TriggerRow.objects.get(pk=TriggerRow.objects.create(name="r").pk)
        version = row.version
        with transaction.atomic():
            verify_unchanged(row)
            assert TriggerRow.objects.get(pk=row.pk).version == version
            row.count = 1
            row.save()
        assert TriggerRow.objects.values_list("count", "version").get(pk=row.pk) == (1, version + 1)
        with verify_unchanged(row):
            row.count = 2
            row.save()
        assert TriggerRow.objects.values_list("count", "version").get(pk=row.pk) == (2, version + 2)
        assert row.version == version + 2

    def test_servers_check_with_one_shared_locking_read(self) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite has no row locks: its write lock holds the rows")
        lock = " LOCK IN SHARE MODE" if connection.display_name == "MariaDB" else " FOR SHARE"
        alice, bob = Doctor.objects.create(name="Alice"), Doctor.objects.create(name="Bob")
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            verify_unchanged(alice, bob)
        (sql,) = [query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"]]
        assert sql.startswith("SELECT ") and sql.endswith(lock), sql

    def test_postgresql_writes_no_new_row_version(self) -> None:
        if connection.vendor != "postgresql":
            pytest.skip("ctid is PostgreSQL's")
        alice = Doctor.objects.create(name="Alice")

        def ctid() -> str:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT ctid FROM {Doctor._meta.db_table} WHERE id = %s", [alice.pk])
                return str(cursor.fetchone()[0])

        before = ctid()
        with transaction.atomic():
            verify_unchanged(alice)
        assert ctid() == before


@pytest.mark.django_db(transaction=True)
class TwoConnectionTests(TransactionTestCase):
    """Real connections: the main thread is one, each worker thread another."""

    def setUp(self) -> None:
        self.alice = Doctor.objects.create(name="Alice", shift="night")
        self.bob = Doctor.objects.create(name="Bob", shift="night")

    def _in_thread(self, func: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(func())
            except BaseException as exc:  # reported by the test
                outcome.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread, outcome

    def test_a_row_changed_by_another_connection_after_the_read_is_refused(self) -> None:
        doctors = list(Doctor.objects.filter(shift="night", on_call=True))
        thread, outcome = self._in_thread(lambda: go_off_call(self.bob.pk))
        thread.join(WAIT)
        assert not thread.is_alive() and outcome == [None]
        carol = Doctor.objects.create(name="Carol", shift="day")
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            verify_unchanged(*doctors)
            carol.on_call = False
            carol.save()
        assert info.value.target.pk == self.bob.pk
        assert (info.value.version, info.value.db_version) == (1, 2)
        assert Doctor.objects.get(pk=carol.pk).on_call is True

    def test_verified_rows_stay_locked_until_the_transaction_ends(self) -> None:
        started = threading.Event()

        def write() -> int:
            started.set()
            return Doctor.objects.filter(pk=self.bob.pk).update(name="Robert", version=F("version") + 1)

        with transaction.atomic():
            verify_unchanged(self.alice, self.bob)
            thread, outcome = self._in_thread(write)
            assert started.wait(WAIT)
            thread.join(1.0)
            # The other connection's UPDATE waits for our transaction.
            assert thread.is_alive() and outcome == []
            assert Doctor.objects.get(pk=self.bob.pk).name == "Bob"
        thread.join(WAIT)
        assert not thread.is_alive() and outcome == [1]
        assert Doctor.objects.get(pk=self.bob.pk).name == "Robert"

    def test_sqlite_takes_its_write_lock_in_a_deferred_transaction(self) -> None:
        if connection.vendor != "sqlite":
            pytest.skip("SQLite's transaction modes")
        started = threading.Event()

        def write() -> int:
            started.set()
            return Doctor.objects.filter(pk=self.bob.pk).update(name="Robert", version=F("version") + 1)

        # As DATABASES["default"]["OPTIONS"]["transaction_mode"] = "DEFERRED" would: BEGIN takes no lock.
        mode, connection.transaction_mode = connection.transaction_mode, None
        try:
            with transaction.atomic():
                verify_unchanged(self.alice, self.bob)
                thread, outcome = self._in_thread(write)
                assert started.wait(WAIT)
                thread.join(1.0)
                assert thread.is_alive() and outcome == []
                assert Doctor.objects.values_list("name", "version").get(pk=self.bob.pk) == ("Bob", 1)
        finally:
            connection.transaction_mode = mode
        thread.join(WAIT)
        assert not thread.is_alive() and outcome == [1]
        assert Doctor.objects.get(pk=self.bob.pk).name == "Robert"

    def test_servers_let_two_transactions_verify_the_same_rows_at_once(self) -> None:
        if connection.vendor == "sqlite":
            pytest.skip("SQLite admits one writer at a time")

        def verify_too() -> str:
            with transaction.atomic():
                verify_unchanged(*Doctor.objects.filter(pk__in=[self.alice.pk, self.bob.pk]))
            return "verified"

        with transaction.atomic():
            verify_unchanged(self.alice, self.bob)
            thread, outcome = self._in_thread(verify_too)
            thread.join(WAIT)
            # A shared lock: the other reader did not wait for this transaction.
            assert not thread.is_alive() and outcome == ["verified"]


def _skew_is_possible() -> None:
    if settings.DB == "sqlite":
        pytest.skip("SQLite's IMMEDIATE transactions run one writer at a time: no write skew to show")


@pytest.mark.django_db(transaction=True)
@pytest.mark.race
class WriteSkewTests(TransactionTestCase):
    """Two doctors go off call at the same moment, each in its own connection."""

    def setUp(self) -> None:
        _skew_is_possible()
        self.alice = Doctor.objects.create(name="Alice", shift="night")
        self.bob = Doctor.objects.create(name="Bob", shift="night")

    def _race(self, *, guard: bool) -> list[Any]:
        """Run both requests; both read before either writes. Return each outcome."""
        barrier = threading.Barrier(2, timeout=WAIT)

        def run(pk: int) -> Any:
            attempts = [0]

            def after_read() -> None:
                attempts[0] += 1
                if attempts[0] == 1:
                    barrier.wait()

            request = retry_on_conflict(attempts=3, delay=0.01)(go_off_call)
            request(pk, guard=guard, after_read=after_read)
            return "off call"

        return run_together(lambda: run(self.alice.pk), lambda: run(self.bob.pk), wait=WAIT)

    def test_without_verification_both_leave_and_nobody_is_on_call(self) -> None:
        """The control experiment: the race below can fail."""
        assert self._race(guard=False) == ["off call", "off call"]
        assert not Doctor.objects.filter(on_call=True).exists()

    def test_with_verification_exactly_one_leaves_and_the_other_is_refused(self) -> None:
        outcomes = self._race(guard=True)
        assert sorted(map(repr, outcomes)) == sorted([repr("off call"), repr(NotEnoughDoctorsError())])
        assert Doctor.objects.filter(on_call=True).count() == 1
