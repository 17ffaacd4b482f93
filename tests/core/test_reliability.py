"""Regression tests for the reliability issue (#10): no path lets a stale write win.

One group per numbered item of the issue. Each sequence ends by asserting the
outcome: the exception, the version the instance holds, and the row as stored.
"Another user" is a thread with a connection of its own that commits its write,
so every test runs against real transactions on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import pickle
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, NotSupportedError, connection, transaction
from django.db.models.signals import m2m_changed
from django.test import override_settings
from rest_framework.test import APIClient

from concurrency.api import concurrency_disable_increment, disable_concurrency, retry_on_conflict
from concurrency.exceptions import BulkUpdateConflictError, RecordModifiedError
from concurrency.forms import ConcurrentForm
from concurrency.http import _mac
from concurrency.signing import sign_version
from tests.demo.models import (
    Article,
    Category,
    ConditionalArticle,
    Counter,
    Note,
    Stock,
    Tag,
    UUIDStock,
)

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 60.0
BIGINT_MAX = 2**63 - 1


class _RollbackError(Exception):
    """Raised inside atomic() to roll back a transaction that did write."""


def as_other_user(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a thread with a connection of its own (committing as it goes); return its result."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the other user's thread hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def other_user_writes(model: type, pk: Any, **changes: Any) -> int:
    """Have another user load the row, change it and commit; return the version it committed."""

    def write() -> int:
        row = model._default_manager.get(pk=pk)
        for name, value in changes.items():
            setattr(row, name, value)
        row.save()
        return row.version

    return as_other_user(write)


def stored(model: type, pk: Any, *names: str) -> tuple[Any, ...]:
    return tuple(model._base_manager.values_list(*names, "version").get(pk=pk))


# --- 1. ConditionalVersionField: the many-to-many touch --------------------------


class TestManyToManyTouch:
    def _rows(self) -> tuple[ConditionalArticle, Tag]:
        pk = ConditionalArticle.objects.create(title="start").pk
        return ConditionalArticle.objects.get(pk=pk), Tag.objects.create(name="t")

    def test_rolled_back_add_leaves_the_committed_version_and_a_stale_save_is_refused(self) -> None:
        article, tag = self._rows()
        before = article.version
        with pytest.raises(_RollbackError), transaction.atomic():
            article.tags.add(tag)
            assert article.version != before  # the touch bumped it inside the transaction
            raise _RollbackError
        assert article.version == before
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        assert committed == before + 1  # the number the rolled-back touch had used
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)
        assert not article.tags.exists()

    def test_rolled_back_remove_leaves_the_committed_version_and_a_stale_save_is_refused(self) -> None:
        article, tag = self._rows()
        article.tags.add(tag)
        before = article.version
        with pytest.raises(_RollbackError), transaction.atomic():
            article.tags.remove(tag)
            raise _RollbackError
        assert article.version == before
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)
        assert list(article.tags.all()) == [tag]

    def test_add_failing_with_integrity_error_leaves_the_committed_version(self) -> None:
        article, tag = self._rows()
        before = article.version
        Counter.objects.create(name="taken")

        def on_add(action: str, **kwargs: Any) -> None:
            if action == "post_add":  # a receiver's write fails inside add()'s transaction
                Counter.objects.create(name="taken")

        m2m_changed.connect(on_add, sender=ConditionalArticle.tags.through, dispatch_uid="reliability")
        try:
            with pytest.raises(IntegrityError):
                article.tags.add(tag)
        finally:
            m2m_changed.disconnect(dispatch_uid="reliability", sender=ConditionalArticle.tags.through)
        assert article.version == before
        assert stored(ConditionalArticle, article.pk, "title") == ("start", before)
        assert not article.tags.exists()
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)

    def test_add_of_a_missing_tag_leaves_the_instance_at_the_stored_version(self) -> None:
        # PostgreSQL and SQLite raise IntegrityError at commit; MariaDB's INSERT IGNORE
        # (Django's fast add) drops the link silently. Either way the instance must
        # hold what the row holds.
        article, _ = self._rows()
        missing = Tag.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000
        with contextlib.suppress(IntegrityError):
            article.tags.add(missing)
        assert not article.tags.exists()
        assert stored(ConditionalArticle, article.pk, "title") == ("start", article.version)
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)

    def test_add_in_a_rolled_back_savepoint_is_given_back_and_the_outer_write_stays(self) -> None:
        article, tag = self._rows()
        before = article.version
        with transaction.atomic():
            article.title = "outer"
            article.save()
            outer = article.version
            with pytest.raises(_RollbackError), transaction.atomic():
                article.tags.add(tag)
                raise _RollbackError
            assert article.version == outer
        assert article.version == outer == before + 1
        assert stored(ConditionalArticle, article.pk, "title") == ("outer", outer)
        article.title = "again"
        article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("again", outer + 1)


# --- 2. VersionedManager.bulk_update() rolled back --------------------------------


class TestRolledBackBulkUpdate:
    def test_stale_save_after_rolled_back_bulk_update_is_refused(self) -> None:
        pk = Stock.objects.create(name="s").pk
        stock = Stock.objects.get(pk=pk)
        with pytest.raises(_RollbackError), transaction.atomic():
            stock.quantity = 5
            assert Stock.objects.bulk_update([stock], ["quantity"]) == 1
            assert stock.version == 2
            raise _RollbackError
        assert stock.version == 1
        assert other_user_writes(Stock, pk, quantity=7) == 2
        stock.quantity = 9
        with pytest.raises(RecordModifiedError):
            stock.save()
        assert stored(Stock, pk, "quantity") == (7, 2)

    def test_stale_bulk_update_after_rolled_back_bulk_update_is_refused(self) -> None:
        pks = [Stock.objects.create(name=f"s{n}").pk for n in range(2)]
        stocks = list(Stock.objects.filter(pk__in=pks).order_by("pk"))
        with pytest.raises(_RollbackError), transaction.atomic():
            for stock in stocks:
                stock.quantity = 5
            Stock.objects.bulk_update(stocks, ["quantity"])
            raise _RollbackError
        assert [s.version for s in stocks] == [1, 1]
        other_user_writes(Stock, pks[0], quantity=7)
        with pytest.raises(BulkUpdateConflictError) as caught:
            Stock.objects.bulk_update(stocks, ["quantity"])
        assert [c.instance.pk for c in caught.value.conflicts] == [pks[0]]
        assert [stored(Stock, pk, "quantity") for pk in pks] == [(7, 2), (0, 1)]

    def test_bulk_update_in_a_committed_transaction_keeps_its_versions(self) -> None:
        pk = Stock.objects.create(name="s").pk
        stock = Stock.objects.get(pk=pk)
        with transaction.atomic():
            stock.quantity = 5
            Stock.objects.bulk_update([stock], ["quantity"])
        assert stock.version == 2
        stock.quantity = 6
        stock.save()
        assert stored(Stock, pk, "quantity") == (6, 3)


# --- 3. Copies of an instance whose write rolled back --------------------------


def _pickled(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj))


COPIES = {"pickle": _pickled, "copy": copy.copy, "deepcopy": copy.deepcopy}


class TestCopies:
    @pytest.mark.parametrize("how", list(COPIES))
    @pytest.mark.parametrize("when", ["inside", "after"])
    @pytest.mark.parametrize("first", ["copy", "original"])
    def test_copy_and_original_are_both_refused_after_another_users_commit(
        self, how: str, when: str, first: str
    ) -> None:
        pk = Counter.objects.create(name="c").pk
        original = Counter.objects.get(pk=pk)
        duplicate = None
        with pytest.raises(_RollbackError), transaction.atomic():
            original.value = 1
            original.save()
            if when == "inside":
                duplicate = COPIES[how](original)
            raise _RollbackError
        if when == "after":
            duplicate = COPIES[how](original)
        assert duplicate is not None
        assert other_user_writes(Counter, pk, value=5) == 2
        order = [duplicate, original] if first == "copy" else [original, duplicate]
        for instance in order:
            instance.value = 9
            with pytest.raises(RecordModifiedError):
                instance.save()
        assert stored(Counter, pk, "value") == (5, 2)

    @pytest.mark.parametrize("how", list(COPIES))
    def test_copy_made_after_a_rollback_holds_the_committed_version(self, how: str) -> None:
        pk = Counter.objects.create(name="c").pk
        original = Counter.objects.get(pk=pk)
        with pytest.raises(_RollbackError), transaction.atomic():
            original.save()
            raise _RollbackError
        duplicate = COPIES[how](original)
        assert (original.version, duplicate.version) == (1, 1)
        duplicate.value = 3
        duplicate.save()
        assert stored(Counter, pk, "value") == (3, 2)
        original.value = 4
        with pytest.raises(RecordModifiedError):
            original.save()
        assert stored(Counter, pk, "value") == (3, 2)

    def test_instance_pickled_while_its_write_was_uncommitted_holds_the_previous_version(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with transaction.atomic():
            row.save()
            data = pickle.dumps(row)
        unpickled = pickle.loads(data)
        assert unpickled.version == 1  # not known to be committed when pickled
        assert row.version == 2  # the original saw the commit
        unpickled.value = 9
        with pytest.raises(RecordModifiedError):
            unpickled.save()
        assert stored(Counter, pk, "value") == (0, 2)

    def test_copies_do_not_share_tracking(self) -> None:
        pk = Counter.objects.create(name="c").pk
        original = Counter.objects.get(pk=pk)
        with transaction.atomic():
            original.save()
            duplicate = copy.copy(original)
            with pytest.raises(_RollbackError), transaction.atomic():
                duplicate.save()  # version 3, rolled back with the savepoint
                raise _RollbackError
        assert original.version == 2
        original.value = 1
        original.save()
        assert stored(Counter, pk, "value") == (1, 3)
        duplicate.value = 2
        with pytest.raises(RecordModifiedError):
            duplicate.save()
        assert stored(Counter, pk, "value") == (1, 3)


# --- 4. One toggle object entered from two threads or tasks -----------------------

DISABLED_COUNTER = disable_concurrency(Counter)
FROZEN_COUNTER = concurrency_disable_increment(Counter)


def _interleave(work: Callable[[int, Callable[[], None]], Any]) -> list[Any]:
    """Run ``work(index, step)`` in two threads; ``step()`` waits until both reach it.

    Both threads enter the toggle, then the first leaves it while the second
    is still inside, then the second leaves.
    """
    barrier = threading.Barrier(2, timeout=WAIT)
    outcomes: list[Any] = [None, None]

    def run(index: int) -> None:
        try:
            outcomes[index] = work(index, barrier.wait)
        except BaseException as exc:
            outcomes[index] = exc
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a thread hung"
    return outcomes


class TestSharedToggle:
    def test_disable_concurrency_object_entered_from_two_threads(self) -> None:
        pks = [Counter.objects.create(name=f"c{n}").pk for n in range(2)]
        stale_inside = [Counter.objects.get(pk=pk) for pk in pks]
        stale_after = [Counter.objects.get(pk=pk) for pk in pks]
        for pk in pks:
            other_user_writes(Counter, pk, value=5)

        def work(index: int, step: Callable[[], None]) -> str:
            with DISABLED_COUNTER:
                step()  # both inside
                stale_inside[index].value = 10 + index
                stale_inside[index].save()  # checks are off here
                step()
                if index == 1:
                    step()  # thread 0 leaves first
            if index == 0:
                step()
            stale_after[index].value = 20 + index
            try:
                stale_after[index].save()
            except RecordModifiedError:
                return "refused"
            return "accepted"

        assert _interleave(work) == ["refused", "refused"]
        assert [stored(Counter, pk, "value") for pk in pks] == [(10, 3), (11, 3)]

    def test_disable_increment_object_entered_from_two_threads(self) -> None:
        pks = [Counter.objects.create(name=f"c{n}").pk for n in range(2)]
        current = [Counter.objects.get(pk=pk) for pk in pks]
        stale = [Counter.objects.get(pk=pk) for pk in pks]

        def work(index: int, step: Callable[[], None]) -> tuple[int, int, str]:
            with FROZEN_COUNTER:
                step()
                current[index].value = 1
                current[index].save()
                kept = current[index].version
                step()
                if index == 1:
                    step()
            if index == 0:
                step()
            current[index].value = 2
            current[index].save()  # increments again
            stale[index].value = 3
            try:
                stale[index].save()
            except RecordModifiedError:
                return kept, current[index].version, "refused"
            return kept, current[index].version, "accepted"

        assert _interleave(work) == [(1, 2, "refused"), (1, 2, "refused")]
        assert [stored(Counter, pk, "value") for pk in pks] == [(2, 2), (2, 2)]

    def test_one_toggle_object_in_two_asyncio_tasks(self) -> None:
        from asgiref.sync import sync_to_async

        pks = [Counter.objects.create(name=f"c{n}").pk for n in range(2)]
        stale = [Counter.objects.get(pk=pk) for pk in pks]
        for pk in pks:
            other_user_writes(Counter, pk, value=5)

        def save(instance: Counter) -> str:
            try:
                instance.save()
            except RecordModifiedError:
                return "refused"
            finally:
                connection.close()
            return "accepted"

        async def main() -> list[Any]:
            toggles = (DISABLED_COUNTER, FROZEN_COUNTER)
            inside = {toggle: asyncio.Barrier(2) for toggle in toggles}
            left = {toggle: asyncio.Event() for toggle in toggles}

            async def task(index: int) -> str:
                for toggle in toggles:
                    with toggle:
                        await asyncio.wait_for(inside[toggle].wait(), WAIT)
                        if index == 1:  # task 0 leaves while task 1 is inside
                            await asyncio.wait_for(left[toggle].wait(), WAIT)
                    if index == 0:
                        left[toggle].set()
                stale[index].value = 9
                return await sync_to_async(save)(stale[index])

            return await asyncio.gather(task(0), task(1), return_exceptions=True)

        assert asyncio.run(main()) == ["refused", "refused"]
        assert [stored(Counter, pk, "value") for pk in pks] == [(5, 2), (5, 2)]


# --- 5. Upserts ---------------------------------------------------------------------


def _upsert(manager: Any, objs: list[Any], unique: list[str], update: list[str]) -> Any:
    options: dict[str, Any] = {"update_conflicts": True, "update_fields": update}
    if connection.features.supports_update_conflicts_with_target:
        options["unique_fields"] = unique
    return manager.bulk_create(objs, **options)


class TestUpsert:
    def test_versioned_manager_refuses_update_conflicts_before_writing(self) -> None:
        existing = Stock.objects.create(name="s", quantity=1)
        objs = [Stock(pk=existing.pk, name="s", quantity=50), Stock(name="new", quantity=2)]
        with pytest.raises(NotSupportedError):
            _upsert(Stock.objects, objs, ["id"], ["quantity"])
        assert list(Stock.objects.values_list("name", "quantity", "version")) == [("s", 1, 1)]

    def test_plain_manager_refuses_update_conflicts_on_a_versioned_model(self) -> None:
        Counter.objects.create(name="c", value=1)
        stale = Counter.objects.get(name="c")
        objs = [Counter(name="c", value=50), Counter(name="new", value=2)]
        with pytest.raises(NotSupportedError):
            _upsert(Counter.objects, objs, ["name"], ["value"])
        assert list(Counter.objects.values_list("name", "value", "version")) == [("c", 1, 1)]
        stale.value = 3
        stale.save()
        assert stored(Counter, stale.pk, "value") == (3, 2)

    def test_plain_bulk_create_and_ignore_conflicts_still_work(self) -> None:
        Stock.objects.bulk_create([Stock(name="a"), Stock(name="b")])
        assert list(Stock.objects.values_list("name", "version")) == [("a", 1), ("b", 1)]
        Counter.objects.create(name="c", value=1)
        Counter.objects.bulk_create([Counter(name="c", value=50), Counter(name="d")], ignore_conflicts=True)
        assert list(Counter.objects.order_by("name").values_list("name", "value", "version")) == [
            ("c", 1, 1),
            ("d", 0, 1),
        ]


# --- 6. retry_on_conflict refreshes every instance it was given ----------------


def _accounts() -> tuple[Stock, Stock]:
    src = Stock.objects.create(name="src", quantity=100)
    dst = Stock.objects.create(name="dst", quantity=0)
    return Stock.objects.get(pk=src.pk), Stock.objects.get(pk=dst.pk)


def _move(src: Stock, dst: Stock, amount: int) -> None:
    src.quantity -= amount
    src.save()
    dst.quantity += amount
    dst.save()


def _by_name(stocks: Any) -> tuple[Stock, Stock]:
    found = {s.name: s for s in stocks}
    return found["src"], found["dst"]


CALLS: dict[str, Callable[[Any, Stock, Stock], Any]] = {
    "positional": lambda f, src, dst: f(src, dst),
    "keywords": lambda f, src, dst: f(src=src, dst=dst),
    "list": lambda f, src, dst: f([src, dst]),
    "tuple": lambda f, src, dst: f((src, dst)),
    "set": lambda f, src, dst: f({src, dst}),
    "dict": lambda f, src, dst: f({"from": src, "to": dst}),
}


class TestRetryRefreshesEveryInstance:
    @pytest.mark.parametrize("call", list(CALLS))
    def test_transfer_debits_the_source_once(self, call: str) -> None:
        src, dst = _accounts()
        other_user_writes(Stock, dst.pk, quantity=1)  # dst is stale before the first attempt
        attempts: list[int] = []

        @retry_on_conflict(attempts=3, delay=0)
        def transfer(*args: Any, **kwargs: Any) -> None:
            attempts.append(1)
            if call in ("positional", "keywords"):
                a, b = (args[0], args[1]) if args else (kwargs["src"], kwargs["dst"])
            elif call == "dict":
                a, b = args[0]["from"], args[0]["to"]
            else:
                a, b = _by_name(args[0])
            _move(a, b, 10)

        CALLS[call](transfer, src, dst)
        assert len(attempts) == 2
        assert stored(Stock, src.pk, "quantity") == (90, 2)
        assert stored(Stock, dst.pk, "quantity") == (11, 3)
        assert (src.quantity, src.version, dst.quantity, dst.version) == (90, 2, 11, 3)

    def test_instances_written_in_a_failed_attempt_start_the_next_from_the_row(self) -> None:
        src, dst = _accounts()
        seen: list[tuple[int, int]] = []

        @retry_on_conflict(attempts=3, delay=0)
        def transfer(a: Stock, b: Stock) -> None:
            seen.append((a.quantity, a.version))
            if len(seen) == 1 and connection.vendor != "sqlite":
                other_user_writes(Stock, b.pk, quantity=1)  # while the attempt is open
            _move(a, b, 10)

        if connection.vendor == "sqlite":
            # SQLite's write lock is held by the attempt: the other user writes before it.
            other_user_writes(Stock, dst.pk, quantity=1)
        transfer(src, dst)
        assert seen == [(100, 1), (100, 1)]
        assert stored(Stock, src.pk, "quantity") == (90, 2)
        assert stored(Stock, dst.pk, "quantity") == (11, 3)


# --- 8. A deferred version field ------------------------------------------------


class TestDeferredVersion:
    def _error(self) -> type[Exception]:
        from concurrency.exceptions import VersionNotLoadedError

        assert issubclass(VersionNotLoadedError, ValueError)
        return VersionNotLoadedError

    @pytest.mark.parametrize("load", ["only", "defer"])
    def test_save_without_the_version_is_refused_and_writes_nothing(self, load: str) -> None:
        error = self._error()
        pk = Counter.objects.create(name="c").pk
        qs = Counter.objects.only("value") if load == "only" else Counter.objects.defer("version")
        partial = qs.get(pk=pk)
        other_user_writes(Counter, pk, value=5)
        partial.value = 9
        with pytest.raises(error) as caught:
            partial.save()
        message = str(caught.value)
        assert "version" in message
        assert any(fix in message for fix in ("only", "defer", "refresh_from_db")), message
        assert stored(Counter, pk, "value") == (5, 2)
        with pytest.raises(error):
            partial.save(update_fields=["value"])
        assert stored(Counter, pk, "value") == (5, 2)

    def test_delete_without_the_version_is_refused_and_deletes_nothing(self) -> None:
        error = self._error()
        pk = Counter.objects.create(name="c").pk
        partial = Counter.objects.only("name").get(pk=pk)
        with pytest.raises(error):
            partial.delete()
        assert stored(Counter, pk, "value") == (0, 1)

    @pytest.mark.parametrize("load", ["only", "defer"])
    def test_versioned_queryset_always_loads_the_version(self, load: str) -> None:
        pk = Stock.objects.create(name="s").pk
        qs = Stock.objects.only("name") if load == "only" else Stock.objects.defer("version", "quantity")
        partial = qs.get(pk=pk)
        assert "version" not in partial.get_deferred_fields()
        other_user_writes(Stock, pk, quantity=5)
        partial.name = "mine"
        with pytest.raises(RecordModifiedError):
            partial.save()
        assert stored(Stock, pk, "name", "quantity") == ("s", 5, 2)


# --- 9. No false conflicts --------------------------------------------------------


class TestNoFalseConflict:
    def test_save_queued_on_commit_before_a_save_in_the_same_block(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)

        def later() -> None:
            row.value = 2
            row.save()

        with transaction.atomic():
            transaction.on_commit(later)
            row.value = 1
            row.save()
        assert stored(Counter, pk, "value") == (2, 3)
        assert row.version == 3

    def test_earlier_on_commit_callback_that_raises(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)

        def boom() -> None:
            raise RuntimeError("callback failed")

        with pytest.raises(RuntimeError), transaction.atomic():
            transaction.on_commit(boom)
            row.value = 1
            row.save()
        assert stored(Counter, pk, "value") == (1, 2)  # the transaction did commit
        assert row.version == 2
        row.value = 2
        row.save()
        assert stored(Counter, pk, "value") == (2, 3)

    def test_refresh_after_rollback_and_another_commit_of_the_same_number(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with pytest.raises(_RollbackError), transaction.atomic():
            row.value = 1
            row.save()
            assert row.version == 2
            raise _RollbackError
        assert row.version == 1  # an attribute read already shows the restored version
        assert other_user_writes(Counter, pk, value=5) == 2
        row.refresh_from_db()
        assert (row.value, row.version) == (5, 2)
        row.value = 6
        row.save()
        assert stored(Counter, pk, "value") == (6, 3)

    def test_refresh_of_the_version_field_alone_clears_the_tracking(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with pytest.raises(_RollbackError), transaction.atomic():
            row.save()
            raise _RollbackError
        other_user_writes(Counter, pk, value=5)
        row.refresh_from_db(fields=["version"])
        row.value = 6
        row.save()
        assert stored(Counter, pk, "value") == (6, 3)

    def test_assigning_the_version_clears_the_tracking(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with pytest.raises(_RollbackError), transaction.atomic():
            row.save()
            raise _RollbackError
        committed = other_user_writes(Counter, pk, value=5)
        row.version = committed  # e.g. the version a form sent back after the user saw the row
        row.value = 6
        row.save()
        assert stored(Counter, pk, "value") == (6, 3)

    def test_rolled_back_savepoint_restores_the_attribute_at_once(self) -> None:
        pk = Counter.objects.create(name="c").pk
        row = Counter.objects.get(pk=pk)
        with transaction.atomic():
            row.save()
            with pytest.raises(_RollbackError), transaction.atomic():
                row.save()
                assert row.version == 3
                raise _RollbackError
            assert row.version == 2
        assert row.version == 2
        assert stored(Counter, pk, "value") == (0, 2)


# --- 10. bulk_update() duplicates whose primary keys differ only in type ---------


class TestBulkUpdateDuplicates:
    def test_integer_pk_and_its_string(self) -> None:
        pk = Stock.objects.create(name="s").pk
        first, second = Stock.objects.get(pk=pk), Stock.objects.get(pk=pk)
        second.pk = str(pk)
        first.quantity, second.quantity = 1, 2
        with pytest.raises(ValueError, match=r"twice|duplicate"):
            Stock.objects.bulk_update([first, second], ["quantity"])
        assert stored(Stock, pk, "quantity") == (0, 1)
        assert (first.version, second.version) == (1, 1)

    @pytest.mark.parametrize("form", ["str", "hex", "upper"])
    def test_uuid_pk_and_its_string(self, form: str) -> None:
        pk = UUIDStock.objects.create(name="s").pk
        first, second = UUIDStock.objects.get(pk=pk), UUIDStock.objects.get(pk=pk)
        second.pk = {"str": str(pk), "hex": pk.hex, "upper": str(pk).upper()}[form]
        assert uuid.UUID(str(second.pk)) == pk
        first.quantity, second.quantity = 1, 2
        with pytest.raises(ValueError, match=r"twice|duplicate"):
            UUIDStock.objects.bulk_update([first, second], ["quantity"])
        assert stored(UUIDStock, pk, "quantity") == (0, 1)


# --- 11. Versions whose successor overflows the column ---------------------------

OVERFLOWING = [BIGINT_MAX, 2**63, 2**64, 10**30, -(2**63) - 1]


class TestOverflowingVersion:
    @pytest.mark.parametrize("version", OVERFLOWING)
    @pytest.mark.parametrize("model", [Counter, ConditionalArticle, Note])
    def test_model_save_and_delete_are_refused(self, model: type, version: int) -> None:
        fields = {Counter: {"name": "c"}, ConditionalArticle: {"title": "t"}, Note: {"title": "t"}}[model]
        pk = model.objects.create(**fields).pk
        before = stored(model, pk)
        instance = model.objects.get(pk=pk)
        instance.version = version
        with pytest.raises(RecordModifiedError):
            instance.save()
        assert stored(model, pk) == before
        with pytest.raises(RecordModifiedError):
            instance.delete()
        assert stored(model, pk) == before

    def test_concurrent_form_answers_with_a_form_error(self) -> None:
        class ArticleForm(ConcurrentForm):
            class Meta:
                model = Article
                fields = ["title", "body", "status", "version"]

        row = Article.objects.create(title="row", status="draft")
        for version in (BIGINT_MAX, 2**63):
            data = {
                "title": "overwritten",
                "body": "",
                "status": "draft",
                "version": sign_version(Article, row.pk, version),
            }
            form = ArticleForm(data, instance=Article.objects.get(pk=row.pk))
            assert not form.is_valid(), version
            assert form.non_field_errors() or form.errors.get("version")
            assert stored(Article, row.pk, "title") == ("row", 1)

    @pytest.mark.parametrize("method", ["put", "patch"])
    @override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False)  # the version comes in the body
    def test_rest_framework_body_version_is_a_conflict_not_a_500(self, method: str) -> None:
        row = Article.objects.create(title="row", status="draft")
        client = APIClient()
        for version in (BIGINT_MAX, 2**63):
            response = getattr(client, method)(
                f"/api/articles/{row.pk}/", {"title": "overwritten", "version": version}, format="json"
            )
            assert response.status_code in (400, 409, 412), (version, response.status_code)
            assert stored(Article, row.pk, "title") == ("row", 1)

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_rest_framework_if_match_is_412_or_400(self, method: str) -> None:
        row = Article.objects.create(title="row", status="draft")
        client = APIClient()
        for version in (BIGINT_MAX, 2**63):
            etag = f'"{version}-{_mac(Article, row.pk, version)}"'
            response = getattr(client, method)(
                f"/api/articles/{row.pk}/",
                {"title": "overwritten"},
                format="json",
                headers={"If-Match": etag},
            )
            assert response.status_code in (400, 412), (version, response.status_code)
            assert stored(Article, row.pk, "title") == ("row", 1)

    @pytest.mark.parametrize(
        "url", ["/plain/articles/{}/", "/plain/async/articles/{}/", "/plain/cbv/articles/{}/"]
    )
    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_plain_view_if_match_is_412_or_400(self, client: Any, url: str, method: str) -> None:
        row = Article.objects.create(title="row", status="draft")
        for version in (BIGINT_MAX, 2**63):
            etag = f'"{version}-{_mac(Article, row.pk, version)}"'
            response = getattr(client, method)(
                url.format(row.pk),
                '{"title": "overwritten"}',
                content_type="application/json",
                headers={"If-Match": etag},
            )
            assert response.status_code in (400, 412), (version, response.status_code)
            assert stored(Article, row.pk, "title") == ("row", 1)


# --- 12. bulk_update() far past every backend's limits ---------------------------


class TestLargeBulkUpdate:
    def _rows(self, n: int) -> list[Stock]:
        Stock.objects.bulk_create([Stock(name=f"s{i}") for i in range(n)], batch_size=1000)
        return list(Stock.objects.order_by("pk"))

    def test_4500_rows_one_field(self) -> None:
        stocks = self._rows(4500)
        for i, stock in enumerate(stocks):
            stock.quantity = i
        assert Stock.objects.bulk_update(stocks, ["quantity"]) == 4500
        assert {s.version for s in stocks} == {2}
        rows = list(Stock.objects.order_by("pk").values_list("quantity", "version"))
        assert rows == [(i, 2) for i in range(4500)]

    def test_5000_rows_several_fields_with_stale_rows_skipped(self) -> None:
        stocks = self._rows(5000)
        category = Category.objects.create(name="c")
        stale = {stocks[n].pk for n in (0, 2500, 4999)}
        Stock.objects.filter(pk__in=stale).update(quantity=-1)  # bumps those rows to version 2
        for i, stock in enumerate(stocks):
            stock.name, stock.quantity, stock.category = f"n{i}", i, category
        refused = Stock.objects.bulk_update(stocks, ["name", "quantity", "category"], on_conflict="skip")
        assert {s.pk for s in refused} == stale
        rows = list(Stock.objects.order_by("pk").values_list("pk", "name", "quantity", "category", "version"))
        for i, (pk, name, quantity, category_id, version) in enumerate(rows):
            if pk in stale:
                assert (name, quantity, category_id, version) == (f"s{i}", -1, None, 2)
            else:
                assert (name, quantity, category_id, version) == (f"n{i}", i, category.pk, 2)

    def test_5000_rows_all_or_nothing_refuses_them_all(self) -> None:
        stocks = self._rows(5000)
        Stock.objects.filter(pk=stocks[4321].pk).update(quantity=-1)
        for stock in stocks:
            stock.quantity = 7
        with pytest.raises(BulkUpdateConflictError) as caught:
            Stock.objects.bulk_update(stocks, ["quantity", "name"])
        assert [c.instance.pk for c in caught.value.conflicts] == [stocks[4321].pk]
        assert set(Stock.objects.values_list("quantity", flat=True)) == {0, -1}
        assert {s.version for s in stocks} == {1}


class TestRowAtTheLargestVersion:
    """The row itself holds 2**63 - 1: the version a client sends is current, but has no successor."""

    def _row(self) -> Article:
        row = Article.objects.create(title="row", status="draft")
        Article.objects.filter(pk=row.pk).update(version=BIGINT_MAX)
        return Article.objects.get(pk=row.pk)

    def test_model_save_is_refused_and_the_row_kept(self) -> None:
        row = self._row()
        row.title = "mine"
        with pytest.raises(RecordModifiedError):
            row.save()
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)
        assert row.version == BIGINT_MAX

    def test_concurrent_form_never_writes(self) -> None:
        class ArticleForm(ConcurrentForm):
            class Meta:
                model = Article
                fields = ["title", "body", "status", "version"]

        row = self._row()
        data = {
            "title": "mine",
            "body": "",
            "status": "draft",
            "version": sign_version(Article, row.pk, BIGINT_MAX),
        }
        form = ArticleForm(data, instance=row)
        if form.is_valid():
            with pytest.raises(RecordModifiedError):
                form.save()
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)

    @override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False)
    def test_rest_framework_body_version_is_a_4xx(self) -> None:
        row = self._row()
        response = APIClient().put(
            f"/api/articles/{row.pk}/", {"title": "mine", "version": BIGINT_MAX}, format="json"
        )
        assert response.status_code in (400, 409, 412), response.status_code
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)

    def test_rest_framework_if_match_is_a_4xx(self) -> None:
        row = self._row()
        etag = f'"{BIGINT_MAX}-{_mac(Article, row.pk, BIGINT_MAX)}"'
        response = APIClient().put(
            f"/api/articles/{row.pk}/", {"title": "mine"}, format="json", headers={"If-Match": etag}
        )
        assert response.status_code in (400, 409, 412), response.status_code
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)

    @pytest.mark.parametrize(
        "url", ["/plain/articles/{}/", "/plain/async/articles/{}/", "/plain/cbv/articles/{}/"]
    )
    def test_plain_view_if_match_is_a_4xx(self, client: Any, url: str) -> None:
        row = self._row()
        etag = f'"{BIGINT_MAX}-{_mac(Article, row.pk, BIGINT_MAX)}"'
        response = client.put(
            url.format(row.pk),
            '{"title": "mine"}',
            content_type="application/json",
            headers={"If-Match": etag},
        )
        assert response.status_code in (400, 409, 412), response.status_code
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)
