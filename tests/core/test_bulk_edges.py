"""bulk_update() and upserts at their edges: rolled back, duplicated, far past the backends' limits.

From the reliability issue (#10): each sequence ends by asserting the outcome (the exception,
the version the instance holds, the row as stored); "another user" is a thread with a connection
of its own that commits its write.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import NotSupportedError, connection, transaction

from concurrency.exceptions import BulkUpdateConflictError, RecordModifiedError
from tests.demo.models import Category, Counter, Stock, UUIDStock
from tests.support.races import other_user_writes, stored

pytestmark = pytest.mark.django_db(transaction=True)


class _RollbackError(Exception):
    """Raised inside atomic() to roll back a transaction that did write."""


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
