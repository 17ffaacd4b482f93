"""concurrency.aggregates: an order and its lines are one thing to edit."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.checks import Error
from django.db import connection, models, transaction
from django.db.models import F
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext, isolate_apps

from concurrency.aggregates import _check_declaration
from concurrency.exceptions import RecordModifiedError
from tests.demo.models import Order, OrderLine
from tests.support.form_reader import form_data

WAIT = 30


def root_updates(queries: CaptureQueriesContext) -> list[str]:
    table = connection.ops.quote_name(Order._meta.db_table)
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE") and table in q["sql"]]


def version(order: Order) -> int:
    return Order.objects.values_list("version", flat=True).get(pk=order.pk)


class ChildWriteTests(TransactionTestCase):
    """Committed rows: a root created in the test's own transaction would need no bump."""

    def setUp(self) -> None:
        self.order = Order.objects.create(customer="ACME")

    def test_creating_a_line_bumps_the_order_and_hands_it_the_new_version(self) -> None:
        with CaptureQueriesContext(connection) as queries:
            OrderLine.objects.create(order=self.order, product="bolt")
        assert version(self.order) == 2
        assert self.order.version == 2
        assert len(root_updates(queries)) == 1
        # The writer's order is current: saving it is not a conflict with its own line.
        self.order.customer = "ACME Ltd"
        self.order.save()
        assert version(self.order) == 3

    def test_a_writer_that_started_from_an_old_order_version_is_refused(self) -> None:
        stale = Order.objects.get(pk=self.order.pk)
        OrderLine.objects.create(order=self.order, product="bolt")  # someone else's line
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            OrderLine.objects.create(order=stale, product="nut")
        assert info.value.target is stale
        assert list(OrderLine.objects.values_list("product", flat=True)) == ["bolt"]
        assert version(self.order) == 2

    def test_changing_and_deleting_a_line_bump_the_order(self) -> None:
        line = OrderLine.objects.create(order=self.order, product="bolt")
        line.quantity = 3
        line.save()
        assert version(self.order) == 3
        line.delete()
        assert version(self.order) == 4

    def test_a_line_without_a_loaded_order_bumps_it_unchecked(self) -> None:
        stale = Order.objects.get(pk=self.order.pk)
        OrderLine.objects.create(order_id=self.order.pk, product="bolt")
        OrderLine.objects.create(order_id=self.order.pk, product="nut")
        assert version(self.order) == 3
        # Anyone holding the order from before is stale now.
        stale.customer = "mine"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()

    def test_one_root_update_per_transaction_not_per_child(self) -> None:
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            for n in range(20):
                OrderLine.objects.create(order=self.order, product=f"p{n}")
        assert len(root_updates(queries)) == 1
        assert version(self.order) == 2

    def test_saving_the_root_first_makes_the_children_free(self) -> None:
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            self.order.customer = "ACME Ltd"
            self.order.save()
            for n in range(5):
                OrderLine.objects.create(order=self.order, product=f"p{n}")
        assert len(root_updates(queries)) == 1
        assert version(self.order) == 2

    def test_a_rolled_back_savepoint_forgets_its_bump(self) -> None:
        with transaction.atomic():
            with pytest.raises(KeyError), transaction.atomic():
                OrderLine.objects.create(order_id=self.order.pk, product="gone")
                raise KeyError("roll back")
            assert version(self.order) == 1
            OrderLine.objects.create(order_id=self.order.pk, product="kept")
            assert version(self.order) == 2

    def test_queryset_update_bulk_update_and_delete_bump_each_root_once(self) -> None:
        other = Order.objects.create(customer="Other")
        lines = [
            OrderLine.objects.create(order_id=o.pk, product=f"p{n}")
            for o in (self.order, other)
            for n in range(3)
        ]
        assert (version(self.order), version(other)) == (4, 4)
        with CaptureQueriesContext(connection) as queries:
            assert OrderLine.objects.filter(product__startswith="p").update(quantity=F("quantity") + 1) == 6
        assert (version(self.order), version(other)) == (5, 5)
        assert len(root_updates(queries)) == 1  # one UPDATE … WHERE id IN (…)
        for line in lines:
            line.quantity = 9
        with CaptureQueriesContext(connection) as queries:
            OrderLine.objects.bulk_update(lines, ["quantity"], batch_size=2)
        assert (version(self.order), version(other)) == (6, 6)
        assert len(root_updates(queries)) == 2  # one per root, once per transaction
        OrderLine.objects.filter(order=other).delete()
        assert (version(self.order), version(other)) == (6, 7)

    def test_moving_lines_with_update_bumps_the_new_root_too(self) -> None:
        other = Order.objects.create(customer="Other")
        OrderLine.objects.create(order_id=self.order.pk, product="bolt")
        OrderLine.objects.filter(order=self.order).update(order=other)
        assert (version(self.order), version(other)) == (3, 2)

    def test_deleting_the_root_cascades_without_touching_it(self) -> None:
        OrderLine.objects.create(order_id=self.order.pk, product="bolt")
        order = Order.objects.get(pk=self.order.pk)
        order.delete()
        assert not Order.objects.exists() and not OrderLine.objects.exists()

    def test_fixtures_do_not_bump(self) -> None:
        line = OrderLine(order_id=self.order.pk, product="raw")
        line.save_base(raw=True)
        assert version(self.order) == 1


class DeclarationCheckTests(TestCase):
    @isolate_apps("tests.demo")
    def test_a_bad_declaration_is_a_system_check_error(self) -> None:
        class Bad(models.Model):
            name = models.CharField(max_length=10)

            class Meta:
                app_label = "demo"

            class ConcurrencyMeta:
                aggregate_root = "name"

        assert _check_declaration(Bad) == [
            Error(
                "ConcurrencyMeta.aggregate_root of demo.Bad is 'name', which is not a foreign key to a "
                "versioned model.",
                hint="Name a ForeignKey (or OneToOneField) of the model to a model with a version field.",
                obj=Bad,
                id="concurrency.E017",
            )
        ]

    def test_the_demo_declaration_passes(self) -> None:
        assert _check_declaration(OrderLine) == []


# -- the admin: a change form with inlines is checked as a whole --------------------------


def _lines_post(client: Any, order: Order) -> dict[str, Any]:
    page = client.get(f"/admin/demo/order/{order.pk}/change/")
    assert page.status_code == 200
    return form_data(page.content, "order_form", _save="Save")


@pytest.mark.django_db(transaction=True)
def test_admin_inline_save_makes_one_root_update(admin_client: Any) -> None:
    order = Order.objects.create(customer="ACME")
    for n in range(20):
        OrderLine.objects.create(order_id=order.pk, product=f"p{n}")
    data = _lines_post(admin_client, order)
    for n in range(20):
        data[f"lines-{n}-quantity"] = "5"
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(f"/admin/demo/order/{order.pk}/change/", data)
    assert response.status_code == 302
    assert set(OrderLine.objects.values_list("quantity", flat=True)) == {5}
    assert version(order) == 22
    assert len(root_updates(queries)) == 1


@pytest.mark.django_db(transaction=True)
def test_admin_a_line_added_by_someone_else_refuses_the_whole_form(admin_client: Any) -> None:
    order = Order.objects.create(customer="ACME")
    line = OrderLine.objects.create(order_id=order.pk, product="bolt")
    data = _lines_post(admin_client, order)
    data["customer"] = "ACME Ltd"
    data["lines-0-quantity"] = "7"
    OrderLine.objects.create(order_id=order.pk, product="someone else's")
    response = admin_client.post(f"/admin/demo/order/{order.pk}/change/", data)
    # The demo's OrderAdmin resolves conflicts: the resolution page, nothing saved.
    assert response.status_code == 409
    assert Order.objects.get(pk=order.pk).customer == "ACME"
    assert OrderLine.objects.get(pk=line.pk).quantity == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["changed", "deleted"])
def test_admin_a_line_changed_or_deleted_elsewhere_refuses_the_whole_form(
    admin_client: Any, change: str
) -> None:
    order = Order.objects.create(customer="ACME")
    lines = [OrderLine.objects.create(order_id=order.pk, product=f"p{n}") for n in range(2)]
    data = _lines_post(admin_client, order)
    data["lines-0-quantity"] = "7"
    other = OrderLine.objects.get(pk=lines[1].pk)
    if change == "changed":
        other.quantity = 2
        other.save()
    else:
        other.delete()
    response = admin_client.post(f"/admin/demo/order/{order.pk}/change/", data)
    assert response.status_code == 409
    assert OrderLine.objects.get(pk=lines[0].pk).quantity == 1


class TwoConnectionTests(TransactionTestCase):
    def test_two_writers_adding_lines_from_the_same_order_version(self) -> None:
        order = Order.objects.create(customer="ACME")
        mine = Order.objects.get(pk=order.pk)
        outcome: list[Any] = []

        def theirs() -> None:
            try:
                with transaction.atomic():
                    OrderLine.objects.create(order=Order.objects.get(pk=order.pk), product="theirs")
                outcome.append("saved")
            except BaseException as exc:
                outcome.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=theirs)
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive() and outcome == ["saved"]
        with pytest.raises(RecordModifiedError), transaction.atomic():
            OrderLine.objects.create(order=mine, product="mine")
        assert list(OrderLine.objects.values_list("product", flat=True)) == ["theirs"]
        assert version(order) == 2
