"""Copies, deferred versions and on_commit saves: no stale instance wins, no false conflict.

From the reliability issue (#10): each sequence ends by asserting the outcome (the exception,
the version the instance holds, the row as stored); "another user" is a thread with a connection
of its own that commits its write.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from django.db import transaction

from concurrency.exceptions import RecordModifiedError
from tests.demo.models import Counter, Stock
from tests.support.races import other_user_writes, stored

pytestmark = pytest.mark.django_db(transaction=True)


class _RollbackError(Exception):
    """Raised inside atomic() to roll back a transaction that did write."""


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
