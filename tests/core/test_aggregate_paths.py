"""Every Django write path that inserts, changes, moves or deletes a child row moves its roots.

Committed rows (TransactionTestCase): a root created in the test's own
transaction would need no bump. Each test names the path it drives; the table
in docs/guide/aggregates.rst lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.checks import Error
from django.db import connection, models, transaction
from django.db.models import OuterRef, Subquery
from django.test import TestCase, TransactionTestCase
from django.test.utils import isolate_apps

from concurrency.aggregates import _check_declaration
from concurrency.api import concurrency_disable_increment
from concurrency.exceptions import RecordModifiedError, VersionNotLoadedError
from concurrency.managers import VersionedQuerySet
from tests.demo.models import (
    Ledger,
    LedgerEntry,
    Order,
    OrderLine,
    Parcel,
    Shipment,
    Task,
    Worker,
)
from tests.support.races import as_other_user, run_together

WAIT = 30


def version(obj: models.Model) -> int:
    return type(obj)._base_manager.values_list("version", flat=True).get(pk=obj.pk)  # type: ignore[no-any-return]


def elsewhere(work: Callable[[], Any]) -> None:
    """Run ``work`` on another connection (another user), committed when it returns."""

    def run() -> None:
        with transaction.atomic():
            work()

    as_other_user(run, wait=WAIT)


class PathTests(TransactionTestCase):
    def setUp(self) -> None:
        self.a = Order.objects.create(customer="A")
        self.b = Order.objects.create(customer="B")

    def versions(self) -> tuple[int, int]:
        return version(self.a), version(self.b)

    # -- save, create, delete ---------------------------------------------------------

    def test_save_create_and_delete_of_a_child(self) -> None:
        line = OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        assert self.versions() == (2, 1)
        line = OrderLine.objects.get(pk=line.pk)
        line.quantity = 5
        line.save()
        assert self.versions() == (3, 1)
        line.delete()
        assert self.versions() == (4, 1)

    async def test_asave_and_adelete(self) -> None:
        line = await OrderLine.objects.acreate(order_id=self.a.pk, product="bolt")
        line.quantity = 4
        await line.asave()
        await line.adelete()
        assert await sync_to_async(self.versions)() == (4, 1)

    def test_moving_a_child_by_save_moves_both_roots(self) -> None:
        line = OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        line = OrderLine.objects.get(pk=line.pk)
        line.order_id = self.b.pk
        line.save()
        assert self.versions() == (3, 2)

    def test_a_child_built_with_its_pk_moves_the_root_its_row_had(self) -> None:
        line = OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        OrderLine(pk=line.pk, order_id=self.b.pk, product="moved").save()
        assert self.versions() == (3, 2)

    def test_a_save_of_a_child_loaded_without_its_key(self) -> None:
        line = OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        partial = OrderLine.objects.only("quantity").get(pk=line.pk)
        partial.quantity = 2
        partial.save()
        assert self.versions() == (3, 1)

    def test_get_or_create_and_update_or_create(self) -> None:
        OrderLine.objects.get_or_create(order_id=self.a.pk, product="bolt")
        OrderLine.objects.get_or_create(order_id=self.a.pk, product="bolt")  # found: no write
        assert self.versions() == (2, 1)
        OrderLine.objects.update_or_create(product="bolt", defaults={"quantity": 3})
        assert self.versions() == (3, 1)

    # -- querysets through any manager -------------------------------------------------

    def test_queryset_writes_through_the_base_manager_and_a_plain_default_manager(self) -> None:
        shipment = Shipment.objects.create(order=self.a)
        parcel = Parcel.objects.create(shipment=shipment)  # Parcel's manager is Django's own
        start = version(shipment)
        Parcel.objects.filter(pk=parcel.pk).update(weight=3)
        assert version(shipment) == start + 1
        OrderLine.objects.create(order_id=self.b.pk, product="nut")
        OrderLine._base_manager.filter(order=self.b).update(quantity=9)
        assert version(self.b) == 3
        Parcel.objects.filter(pk=parcel.pk).delete()
        assert version(shipment) == start + 2

    def test_bulk_create(self) -> None:
        OrderLine.objects.bulk_create(
            [OrderLine(order_id=self.a.pk, product="x"), OrderLine(order_id=self.b.pk, product="y")]
        )
        assert self.versions() == (2, 2)

    def test_bulk_create_holding_a_stale_root_is_refused(self) -> None:
        stale = Order.objects.get(pk=self.a.pk)
        elsewhere(lambda: Order.objects.get(pk=self.a.pk).save())
        with pytest.raises(RecordModifiedError), transaction.atomic():
            OrderLine.objects.bulk_create([OrderLine(order=stale, product="x")])
        assert not OrderLine.objects.exists()

    def test_bulk_update_of_a_child_without_and_with_a_version(self) -> None:
        lines = [OrderLine.objects.create(order_id=self.a.pk, product="x")]
        tasks = [Task.objects.create(order_id=self.b.pk, title="t")]
        assert self.versions() == (2, 2)
        lines[0].quantity = 3
        OrderLine._base_manager.bulk_update(lines, ["quantity"])
        tasks[0].title = "u"
        Task.objects.bulk_update(tasks, ["title"])  # Django's own, through a plain manager
        assert self.versions() == (3, 3)
        tasks[0].title = "v"
        VersionedQuerySet(Task).bulk_update(tasks, ["title"])  # the checked one
        assert self.versions() == (3, 4)
        assert Task.objects.get().title == "v"

    def test_bulk_update_and_update_of_the_key(self) -> None:
        lines = [OrderLine.objects.create(order_id=self.a.pk, product=p) for p in "xy"]
        assert self.versions() == (3, 1)
        OrderLine.objects.bulk_update(lines, ["order"])  # no line moves
        assert self.versions() == (4, 1)
        lines[0].order = self.b
        OrderLine.objects.bulk_update(lines, ["order", "quantity"])
        assert self.versions() == (5, 2)
        first = Order.objects.filter(customer="A").values("pk")[:1]
        OrderLine.objects.filter(pk=lines[0].pk).update(order=Subquery(first))
        assert self.versions() == (6, 3)
        assert OrderLine.objects.get(pk=lines[0].pk).order_id == self.a.pk
        OrderLine.objects.update(order=Order.objects.get(pk=self.b.pk))
        assert self.versions() == (7, 4)
        same = Order.objects.filter(pk=OuterRef("order_id")).values("pk")
        OrderLine.objects.update(order=Subquery(same))  # stays where it is
        assert self.versions() == (7, 5)

    # -- related managers ----------------------------------------------------------------

    def test_related_manager_add_moves_the_old_and_the_new_root(self) -> None:
        line = OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        b = Order.objects.get(pk=self.b.pk)
        b.lines.add(line)
        assert self.versions() == (3, 2)
        assert b.version == 2  # the instance the writer held was checked and moved
        line = OrderLine.objects.get(pk=line.pk)
        Order.objects.get(pk=self.a.pk).lines.add(line, bulk=False)
        assert self.versions() == (4, 3)

    def test_related_manager_add_with_a_stale_root_is_refused(self) -> None:
        line = OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        stale = Order.objects.get(pk=self.b.pk)
        elsewhere(lambda: Order.objects.get(pk=self.b.pk).save())
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.lines.add(line)
        assert OrderLine.objects.get(pk=line.pk).order_id == self.a.pk

    def test_related_manager_create(self) -> None:
        a = Order.objects.get(pk=self.a.pk)
        a.lines.create(product="bolt")
        assert self.versions() == (2, 1) and a.version == 2

    def test_related_manager_set_remove_and_clear(self) -> None:
        for bulk in (True, False):
            Order.objects.filter(pk__in=[self.a.pk, self.b.pk]).update(version=1)
            tasks = [Task.objects.create(order_id=self.a.pk, title=str(n)) for n in range(2)]
            start = version(self.a)
            a = Order.objects.get(pk=self.a.pk)
            a.tasks.remove(tasks[0], bulk=bulk)
            assert version(self.a) == start + 1
            a = Order.objects.get(pk=self.a.pk)
            first = Task.objects.using("default").get(pk=tasks[0].pk)  # the primary: add() wants its database
            a.tasks.set([first], bulk=bulk)  # tasks[1] leaves, tasks[0] comes back
            assert version(self.a) == start + 2
            a = Order.objects.get(pk=self.a.pk)
            a.tasks.clear(bulk=bulk)
            assert version(self.a) == start + 3
            b = Order.objects.get(pk=self.b.pk)
            b.tasks.set(Task.objects.using("default").filter(pk__in=[t.pk for t in tasks]), bulk=bulk)
            assert version(self.b) == 2
            Task.objects.all().delete()

    # -- cascades and SET_NULL / SET_DEFAULT from other parents ----------------------

    def test_deleting_another_parent_cascades_or_sets_null_and_moves_the_root(self) -> None:
        w1, w2, w3 = (Worker.objects.create(name=n) for n in ("w1", "w2", "w3"))
        Task.objects.create(order=self.a, worker=w1, title="set null")
        Task.objects.create(order=self.b, backup=w2, title="set default")
        Task.objects.create(order=self.b, crew=w3, title="cascade")
        assert self.versions() == (2, 3)
        w1.delete()
        assert self.versions() == (3, 3)
        w2.delete()
        assert self.versions() == (3, 4)
        w3.delete()
        assert self.versions() == (3, 5)
        assert Task.objects.count() == 2

    def test_deleting_the_root_deletes_its_children(self) -> None:
        OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        shipment = Shipment.objects.create(order_id=self.a.pk)
        Parcel.objects.create(shipment=shipment)
        a = Order.objects.get(pk=self.a.pk)
        a.delete()
        assert not Order.objects.filter(pk=self.a.pk).exists()
        assert not Shipment.objects.exists() and not Parcel.objects.exists()
        assert not OrderLine.objects.exists()

    def test_a_refused_delete_of_the_root_does_not_stop_its_children_moving_it(self) -> None:
        stale = Order.objects.get(pk=self.a.pk)
        Order.objects.get(pk=self.a.pk).save()
        with transaction.atomic():
            with pytest.raises(RecordModifiedError):
                stale.delete()
            OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        assert version(self.a) == 3

    def test_save_with_update_fields_moves_the_root_the_row_has(self) -> None:
        line = OrderLine.objects.create(order_id=self.a.pk, product="bolt")
        line = OrderLine.objects.get(pk=line.pk)
        line.order_id = self.b.pk  # changed in memory, not saved
        line.quantity = 3
        line.save(update_fields=["quantity"])
        assert self.versions() == (3, 1)

    # -- keys and nesting ---------------------------------------------------------------------

    def test_a_to_field_key_moves_the_root_it_names(self) -> None:
        first = Ledger.objects.create(code="placeholder")
        second = Ledger.objects.create(code=str(first.pk))  # its code is the other's pk
        LedgerEntry.objects.create(ledger_id=second.code, amount=1)
        assert (version(first), version(second)) == (1, 2)
        entry = LedgerEntry.objects.get()
        entry.amount = 2
        entry.save()
        LedgerEntry.objects.update(amount=3)
        assert (version(first), version(second)) == (1, 4)
        held = Ledger.objects.get(pk=second.pk)
        LedgerEntry.objects.create(ledger=held, amount=4)
        assert held.version == 5 == version(second)
        assert version(first) == 1

    def test_nested_roots_move_at_every_level(self) -> None:
        shipment = Shipment.objects.create(order=self.a)
        assert version(self.a) == 2
        parcel = Parcel.objects.create(shipment=shipment)
        assert (version(shipment), version(self.a)) == (2, 3)
        parcel = Parcel.objects.get(pk=parcel.pk)
        parcel.weight = 7
        parcel.save()
        assert (version(shipment), version(self.a)) == (3, 4)
        Parcel.objects.update(weight=8)
        assert (version(shipment), version(self.a)) == (4, 5)
        # Holding the shipment, which holds its order: both are checked.
        held = Shipment.objects.select_related("order").get(pk=shipment.pk)
        Parcel.objects.create(shipment=held)
        assert held.version == version(shipment) == 5
        assert held.order.version == version(self.a) == 6

    def test_nested_roots_holding_a_stale_grand_root_are_refused(self) -> None:
        shipment = Shipment.objects.create(order=self.a)
        held = Shipment.objects.select_related("order").get(pk=shipment.pk)
        elsewhere(lambda: Order.objects.get(pk=self.a.pk).save())
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            Parcel.objects.create(shipment=held)
        assert info.value.target is held.order
        assert not Parcel.objects.exists()


class OneTransactionTests(TransactionTestCase):
    def setUp(self) -> None:
        self.order = Order.objects.create(customer="A")
        self.line = OrderLine.objects.create(order_id=self.order.pk, product="bolt")  # version 2

    def test_an_unchecked_bump_does_not_skip_the_check_of_a_stale_holder(self) -> None:
        stale = Order.objects.get(pk=self.order.pk)
        elsewhere(lambda: Order.objects.filter(pk=self.order.pk).update(customer="theirs", version=3))
        with pytest.raises(RecordModifiedError), transaction.atomic():
            OrderLine.objects.filter(order=self.order).update(quantity=5)
            OrderLine.objects.create(order=stale, product="nut")
        assert list(OrderLine.objects.values_list("product", "quantity")) == [("bolt", 1)]

    def test_a_root_saved_without_increment_does_not_count_as_moved(self) -> None:
        mine = Order.objects.get(pk=self.order.pk)
        theirs = Order.objects.get(pk=self.order.pk)
        with transaction.atomic():
            with concurrency_disable_increment(mine):
                mine.save()
            OrderLine.objects.create(order=mine, product="nut")
        assert version(self.order) == 3
        theirs.customer = "stale"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            theirs.save()
        assert Order.objects.get().customer == "A"

    def test_the_root_saved_after_its_children_in_one_transaction_is_no_conflict(self) -> None:
        mine = Order.objects.get(pk=self.order.pk)
        with transaction.atomic():
            OrderLine.objects.filter(order=mine).update(quantity=4)
            mine.customer = "mine"
            mine.save()
        assert mine.version == version(self.order) == 4
        assert Order.objects.get().customer == "mine"

    def test_the_root_saved_after_its_children_is_rolled_back_with_them(self) -> None:
        mine = Order.objects.get(pk=self.order.pk)
        with pytest.raises(KeyError), transaction.atomic():
            OrderLine.objects.filter(order=mine).update(quantity=4)
            mine.save()
            raise KeyError
        assert mine.version == 2 == version(self.order)
        mine.save()
        assert version(self.order) == 3

    def test_a_stale_copy_of_the_root_saved_after_the_root_itself_is_refused(self) -> None:
        mine = Order.objects.get(pk=self.order.pk)
        copy = Order.objects.get(pk=self.order.pk)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            OrderLine.objects.filter(order=mine).update(quantity=4)
            mine.customer = "first"
            mine.save()
            copy.customer = "second"
            copy.save()
        assert Order.objects.get().customer == "A"

    def test_a_root_with_its_version_not_loaded_is_refused(self) -> None:
        held = Order.objects.only("customer").get(pk=self.order.pk)
        with pytest.raises(VersionNotLoadedError):
            OrderLine.objects.create(order=held, product="nut")
        assert OrderLine.objects.count() == 1


class AsyncAndThreadsTests(TransactionTestCase):
    @pytest.mark.race
    def test_two_threads_adding_lines_from_the_same_held_order(self) -> None:
        order = Order.objects.create(customer="A")
        held = [Order.objects.get(pk=order.pk) for _ in range(2)]

        def add(mine: Order) -> str:
            try:
                with transaction.atomic():
                    OrderLine.objects.create(order=mine, product="x")
                return "saved"
            except RecordModifiedError:
                return "refused"

        outcome = run_together(*(partial(add, mine) for mine in held), wait=WAIT)
        if connection.vendor == "sqlite":
            # One writer at a time: the loser may also meet "database is locked".
            assert outcome.count("saved") == 1
        else:
            assert sorted(map(str, outcome)) == ["refused", "saved"]
        assert OrderLine.objects.count() == 1
        assert version(order) == 2

    async def test_async_create_through_the_related_manager(self) -> None:
        order = await Order.objects.acreate(customer="A")
        await order.lines.acreate(product="x")
        assert await sync_to_async(version)(order) == 2 == order.version


class CheckTests(TestCase):
    @isolate_apps("tests.demo")
    def test_a_root_whose_version_cannot_move_is_refused(self) -> None:
        from concurrency.fields import AutoIncVersionField

        class Frozen(models.Model):
            version = AutoIncVersionField()

            class Meta:
                app_label = "demo"

            class ConcurrencyMeta:
                increment = False

        class Child(models.Model):
            frozen = models.ForeignKey(Frozen, on_delete=models.CASCADE)

            class Meta:
                app_label = "demo"

            class ConcurrencyMeta:
                aggregate_root = "frozen"

        errors = _check_declaration(Child)
        assert [e.id for e in errors] == ["concurrency.E018"]
        assert isinstance(errors[0], Error)
