"""Versioned bulk writes: VersionedQuerySet.update() and bulk_update()."""

from __future__ import annotations

import pytest
from django.db import NotSupportedError, connection, models, transaction
from django.db.models import F
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext

from concurrency.api import concurrency_disable_increment, disable_concurrency
from concurrency.exceptions import BulkUpdateConflictError, RecordModifiedError
from concurrency.managers import VersionedQuerySet
from tests.demo.models import (
    Category,
    CheckFieldsArticle,
    Child,
    ConditionalArticle,
    NoIncrement,
    PlainCounter,
    StampedStock,
    Stock,
    TriggerRow,
    UUIDStock,
)


def _updates(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("UPDATE")]


def _stocks(n: int, model: type[models.Model] = Stock) -> list:
    model.objects.bulk_create([model(name=f"s{i}") for i in range(n)])
    return list(model.objects.order_by("pk"))


def _db(model: type[models.Model] = Stock) -> list[tuple]:
    return list(model.objects.order_by("pk").values_list("quantity", "version"))


class UpdateTests(TestCase):
    def test_update_bumps_every_touched_row_in_one_statement(self) -> None:
        stocks = _stocks(3)
        with CaptureQueriesContext(connection) as ctx:
            assert Stock.objects.filter(pk__in=[stocks[0].pk, stocks[1].pk]).update(quantity=7) == 2
        assert len(ctx.captured_queries) == 1
        assert _db() == [(7, 2), (7, 2), (0, 1)]

    def test_stale_instance_fails_after_update(self) -> None:
        stock = _stocks(1)[0]
        Stock.objects.update(quantity=F("quantity") + 5)
        stock.name = "stale"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stock.save()
        assert _db() == [(5, 2)]

    def test_integer_version_strictly_increases(self) -> None:
        stocks = _stocks(2, StampedStock)
        StampedStock.objects.update(quantity=1)
        rows = list(StampedStock.objects.order_by("pk"))
        for before, after in zip(stocks, rows, strict=True):
            assert after.version > before.version
            assert after.quantity == 1

    def test_explicit_version_is_kept(self) -> None:
        _stocks(1)
        Stock.objects.update(version=40)
        assert _db() == [(0, 40)]

    def test_disable_increment_leaves_versions(self) -> None:
        _stocks(1)
        with concurrency_disable_increment(Stock):
            Stock.objects.update(quantity=3)
        assert _db() == [(3, 1)]

    def test_increment_false_model_is_not_bumped(self) -> None:
        row = NoIncrement.objects.create(name="a")
        VersionedQuerySet(NoIncrement).update(name="b")
        assert NoIncrement.objects.values_list("name", "version").get(pk=row.pk) == ("b", 1)

    def test_unversioned_model_behaves_like_django(self) -> None:
        PlainCounter.objects.create(name="a")
        assert VersionedQuerySet(PlainCounter).update(value=F("value") + 1) == 1
        assert PlainCounter.objects.get().value == 1

    def test_multi_table_child_bumps_the_parent_version(self) -> None:
        child = Child.objects.create(name="a", extra="x")
        VersionedQuerySet(Child).update(extra="y", name="b")
        row = Child.objects.get()
        assert (row.name, row.extra, row.version) == ("b", "y", child.version + 1)


class BulkUpdateTests(TestCase):
    def test_one_statement_writes_fields_and_bumps_versions(self) -> None:
        stocks = _stocks(5)
        for i, stock in enumerate(stocks):
            stock.quantity = i * 10
        with CaptureQueriesContext(connection) as ctx:
            assert Stock.objects.bulk_update(stocks, ["quantity"]) == 5
        assert len(_updates(ctx)) == 1
        assert _db() == [(0, 2), (10, 2), (20, 2), (30, 2), (40, 2)]
        assert [s.version for s in stocks] == [2] * 5

    def test_written_instances_can_save_again(self) -> None:
        stocks = _stocks(2)
        Stock.objects.bulk_update(stocks, ["quantity"])
        stocks[0].quantity = 9
        stocks[0].save()
        assert _db() == [(9, 3), (0, 2)]

    def test_stale_rows_raise_and_nothing_is_written(self) -> None:
        stocks = _stocks(10)
        Stock.objects.filter(pk__in=[stocks[2].pk, stocks[7].pk]).update(quantity=-1)
        for stock in stocks:
            stock.quantity = 5
        with pytest.raises(BulkUpdateConflictError) as info, transaction.atomic():
            Stock.objects.bulk_update(stocks, ["quantity"], batch_size=3)
        error = info.value
        assert isinstance(error, RecordModifiedError)
        assert error.objects == [stocks[2], stocks[7]]
        assert [(c.version, c.db_version, c.deleted) for c in error.conflicts] == [(1, 2, False)] * 2
        assert error.model is Stock
        assert error.target is None
        assert _db() == [(-1, 2) if i in (2, 7) else (0, 1) for i in range(10)]
        assert [s.version for s in stocks] == [1] * 10

    def test_deleted_row_is_reported_as_deleted(self) -> None:
        stocks = _stocks(3)
        Stock.objects.filter(pk=stocks[1].pk).delete()
        with pytest.raises(BulkUpdateConflictError) as info:
            Stock.objects.bulk_update(stocks, ["quantity"])
        [conflict] = info.value.conflicts
        assert conflict.instance is stocks[1]
        assert (conflict.version, conflict.db_version, conflict.deleted) == (1, None, True)

    def test_skip_returns_stale_rows_and_writes_the_rest(self) -> None:
        stocks = _stocks(6)
        Stock.objects.filter(pk=stocks[4].pk).update(quantity=-1)
        for stock in stocks:
            stock.quantity = 8
        stale = Stock.objects.bulk_update(stocks, ["quantity"], batch_size=4, on_conflict="skip")
        assert stale == [stocks[4]]
        assert _db() == [(-1, 2) if i == 4 else (8, 2) for i in range(6)]
        assert [s.version for s in stocks] == [1 if i == 4 else 2 for i in range(6)]

    def test_the_callback_hears_of_each_refused_row(self) -> None:
        from django.test import override_settings

        from tests.core.test_save import calls

        calls.clear()
        stocks = _stocks(4)
        Stock.objects.filter(pk=stocks[1].pk).update(quantity=-1)
        Stock.objects.filter(pk=stocks[3].pk).delete()
        for stock in stocks:
            stock.quantity = 8
        with override_settings(CONCURRENCY_CALLBACK="tests.core.test_save.returning_false"):
            stale = Stock.objects.bulk_update(stocks, ["quantity"], on_conflict="skip")
        assert stale == [stocks[1], stocks[3]]
        assert calls == [stocks[1], stocks[3]]
        assert _db() == [(8, 2), (-1, 2), (8, 2)]

    def test_skip_returns_empty_list_when_all_are_current(self) -> None:
        stocks = _stocks(2)
        assert Stock.objects.bulk_update(stocks, ["quantity"], on_conflict="skip") == []

    def test_conflict_inside_outer_atomic_leaves_it_usable(self) -> None:
        stocks = _stocks(2)
        Stock.objects.filter(pk=stocks[0].pk).update(name="other")
        with transaction.atomic():
            Stock.objects.filter(pk=stocks[1].pk).update(quantity=1)
            with pytest.raises(BulkUpdateConflictError):
                Stock.objects.bulk_update(stocks, ["quantity"])
            Category.objects.create(name="after")
        assert Category.objects.filter(name="after").exists()
        assert _db() == [(0, 2), (1, 2)]

    def test_batches_respect_batch_size(self) -> None:
        stocks = _stocks(10)
        with CaptureQueriesContext(connection) as ctx:
            Stock.objects.bulk_update(stocks, ["quantity", "name"], batch_size=4)
        assert len(_updates(ctx)) == 3
        assert [s.version for s in stocks] == [2] * 10

    @pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's parameter limit")
    def test_sqlite_batches_stay_under_the_parameter_limit(self) -> None:
        stocks = _stocks(400)
        with CaptureQueriesContext(connection) as ctx:
            Stock.objects.bulk_update(stocks, ["quantity", "name"])
        # 2 parameters per field, the version and the row check: 8 per row. The
        # limit is 999 on Django 5.2, SQLite's own (often 32766) from Django 6.0.
        per_batch = connection.features.max_query_params // 8
        assert len(_updates(ctx)) == -(-400 // per_batch)
        assert set(_db()) == {(0, 2)}

    def test_foreign_key_and_time_based_version(self) -> None:
        category = Category.objects.create(name="c")
        stocks = _stocks(2, StampedStock)
        olds = [s.version for s in stocks]
        for stock in stocks:
            stock.quantity = 4
        StampedStock.objects.bulk_update(stocks, ["quantity"])
        rows = list(StampedStock.objects.order_by("pk"))
        assert [r.version for r in rows] == [s.version for s in stocks]
        assert all(new > old for new, old in zip([s.version for s in stocks], olds, strict=True))
        stock = _stocks(1)[0]
        stock.category = category
        Stock.objects.bulk_update([stock], ["category"])
        assert Stock.objects.get().category_id == category.pk

    def test_uuid_primary_keys_are_matched(self) -> None:
        stocks = _stocks(4, UUIDStock)
        UUIDStock.objects.filter(pk=stocks[2].pk).update(name="x")
        stale = UUIDStock.objects.bulk_update(stocks, ["quantity"], on_conflict="skip")
        assert stale == [stocks[2]]
        assert [s.version for s in stocks] == [2, 2, 1, 2]

    def test_expression_values_are_written(self) -> None:
        stocks = _stocks(2)
        stocks[0].quantity = F("quantity") + 3
        stocks[1].quantity = 1
        Stock.objects.bulk_update(stocks, ["quantity"])
        assert _db() == [(3, 2), (1, 2)]

    def test_disable_concurrency_skips_the_check_but_bumps(self) -> None:
        stocks = _stocks(2)
        Stock.objects.filter(pk=stocks[0].pk).update(name="other")
        for stock in stocks:
            stock.quantity = 6
        with disable_concurrency(Stock):
            assert Stock.objects.bulk_update(stocks, ["quantity"]) == 2
        # As with save(): the version moves past whatever the row held, and is read back.
        assert _db() == [(6, 3), (6, 2)]
        assert [s.version for s in stocks] == [3, 2]

    def test_disable_increment_checks_but_keeps_versions(self) -> None:
        stocks = _stocks(2)
        for stock in stocks:
            stock.quantity = 2
        with concurrency_disable_increment(Stock):
            Stock.objects.bulk_update(stocks, ["quantity"])
        assert _db() == [(2, 1), (2, 1)]
        Stock.objects.filter(pk=stocks[0].pk).update(name="x")
        with concurrency_disable_increment(Stock), pytest.raises(BulkUpdateConflictError):
            Stock.objects.bulk_update(stocks, ["quantity"])

    def test_unversioned_model_behaves_like_django(self) -> None:
        counter = PlainCounter.objects.create(name="a")
        counter.value = 4
        assert VersionedQuerySet(PlainCounter).bulk_update([counter], ["value"]) == 1
        assert VersionedQuerySet(PlainCounter).bulk_update([counter], ["value"], on_conflict="skip") == []
        assert PlainCounter.objects.get().value == 4

    def test_empty_list(self) -> None:
        assert Stock.objects.bulk_update([], ["quantity"]) == 0
        assert Stock.objects.bulk_update([], ["quantity"], on_conflict="skip") == []

    def test_bad_arguments_are_refused(self) -> None:
        stocks = _stocks(2)
        cases = [
            ({"fields": ["version"]}, ValueError, "writes 'version' itself"),
            ({"fields": []}, ValueError, "Field names"),
            ({"fields": ["id"]}, ValueError, "primary key"),
            ({"fields": ["quantity"], "batch_size": 0}, ValueError, "Batch size"),
            ({"fields": ["quantity"], "on_conflict": "ignore"}, ValueError, "on_conflict"),
        ]
        for kwargs, exc, message in cases:
            with pytest.raises(exc, match=message):
                Stock.objects.bulk_update(stocks, **kwargs)
        with pytest.raises(ValueError, match="twice"):
            Stock.objects.bulk_update([stocks[0], Stock.objects.get(pk=stocks[0].pk)], ["quantity"])
        with pytest.raises(ValueError, match="primary key set"):
            Stock.objects.bulk_update([Stock(name="new")], ["quantity"])
        assert _db() == [(0, 1), (0, 1)]

    def test_rows_outside_the_queryset_are_not_written(self) -> None:
        shelf = Category.objects.create(name="shelf")
        stocks = _stocks(3)
        Stock.objects.filter(pk__in=[stocks[0].pk, stocks[2].pk]).update(category=shelf)
        stocks = list(Stock.objects.order_by("pk"))
        for stock in stocks:
            stock.quantity = 4
        # A filter through a join: Django turns it into a subquery (a SELECT first on MariaDB).
        stale = Stock.objects.filter(category__name="shelf").bulk_update(
            stocks, ["quantity"], on_conflict="skip"
        )
        assert stale == [stocks[1]]
        assert _db() == [(4, 3), (0, 1), (4, 3)]
        with pytest.raises(TypeError, match="slice"):
            Stock.objects.all()[:2].bulk_update(stocks, ["quantity"])

    def test_multi_table_child_with_parent_version_is_refused(self) -> None:
        child = Child.objects.create(name="a", extra="x")
        with pytest.raises(NotSupportedError, match=r"demo\.Parent"):
            VersionedQuerySet(Child).bulk_update([child], ["extra"])


class AsyncBulkTests(TransactionTestCase):
    async def test_abulk_update_and_aupdate(self) -> None:
        await Stock.objects.abulk_create([Stock(name="a"), Stock(name="b")])
        stocks = [s async for s in Stock.objects.order_by("pk")]
        await Stock.objects.filter(pk=stocks[1].pk).aupdate(quantity=1)
        stale = await Stock.objects.abulk_update(stocks, ["quantity"], on_conflict="skip")
        assert stale == [stocks[1]]
        assert [s.version async for s in Stock.objects.order_by("pk")] == [2, 2]
        with pytest.raises(BulkUpdateConflictError):
            await Stock.objects.abulk_update(stocks, ["quantity"])


class DatabaseVersionTests(TestCase):
    """Versions decided in the database (TriggerVersionField, ConditionalVersionField)."""

    def test_trigger_version_bulk_update_checks_and_reads_versions_back(self) -> None:
        TriggerRow.objects.bulk_create([TriggerRow(name=f"r{i}") for i in range(3)])
        rows = list(TriggerRow.objects.order_by("pk"))
        for row in rows:
            row.count = 5
        assert VersionedQuerySet(TriggerRow).bulk_update(rows, ["count"]) == 3
        stored = list(TriggerRow.objects.order_by("pk").values_list("count", "version"))
        assert stored == [(5, 2)] * 3
        assert [r.version for r in rows] == [2, 2, 2]
        TriggerRow.objects.filter(pk=rows[1].pk).update(count=9)  # the trigger bumps it
        with pytest.raises(BulkUpdateConflictError) as info:
            VersionedQuerySet(TriggerRow).bulk_update(rows, ["count"])
        assert [(c.instance, c.version, c.db_version) for c in info.value.conflicts] == [(rows[1], 2, 3)]

    def test_trigger_version_update_bumps_once(self) -> None:
        TriggerRow.objects.create(name="r")
        VersionedQuerySet(TriggerRow).update(count=1)
        assert TriggerRow.objects.values_list("count", "version").get() == (1, 2)

    def test_conditional_version_bumps_only_rows_whose_checked_fields_change(self) -> None:
        ConditionalArticle.objects.bulk_create([ConditionalArticle(title=f"t{i}") for i in range(3)])
        rows = list(ConditionalArticle.objects.order_by("pk"))
        rows[0].title = "changed"
        assert VersionedQuerySet(ConditionalArticle).bulk_update(rows, ["title"]) == 3
        assert list(ConditionalArticle.objects.order_by("pk").values_list("title", "version")) == [
            ("changed", 2),
            ("t1", 1),
            ("t2", 1),
        ]
        assert [r.version for r in rows] == [2, 1, 1]
        # Unchanged rows are still checked against their version.
        ConditionalArticle.objects.filter(pk=rows[2].pk).update(version=7)
        stale = VersionedQuerySet(ConditionalArticle).bulk_update(rows, ["title"], on_conflict="skip")
        assert stale == [rows[2]]

    def test_conditional_version_update_bumps_when_a_checked_field_changes(self) -> None:
        CheckFieldsArticle.objects.create(title="a", notes="n")
        qs = VersionedQuerySet(CheckFieldsArticle)
        qs.update(notes="other")  # not checked: no bump
        qs.update(title="a")  # checked, but the same value: no bump
        assert CheckFieldsArticle.objects.values_list("notes", "version").get() == ("other", 1)
        qs.update(title="b", notes="x")
        assert CheckFieldsArticle.objects.values_list("title", "version").get() == ("b", 2)
