"""django-fsm-2: transitions on a versioned model, and its ConcurrentTransitionMixin beside ours."""

from __future__ import annotations

from functools import partial

import pytest
from django.db import transaction
from django_fsm import TransitionNotAllowed

from concurrency.exceptions import RecordModifiedError
from concurrency.fields import VersionField
from tests.interop.models import GuardedOrder, Order
from tests.support.races import run_together

pytestmark = pytest.mark.django_db


def row(model: type, pk: int) -> tuple[str, str, int]:
    obj = model.objects.get(pk=pk)
    return obj.state, obj.note, obj.version


def test_transition_is_saved_with_a_new_version() -> None:
    order = Order.objects.create(reference="A-1")
    order.pay()
    order.save()
    assert row(Order, order.pk) == ("paid", "", 2)
    order.ship()
    order.save()
    assert row(Order, order.pk) == ("shipped", "", 3)


def test_stale_transition_is_refused_and_the_row_keeps_its_state() -> None:
    order = Order.objects.create(reference="A-2")
    clerk, customer = Order.objects.get(pk=order.pk), Order.objects.get(pk=order.pk)
    clerk.pay()
    clerk.save()
    customer.cancel()  # allowed from "new", which is all this copy knows
    with pytest.raises(RecordModifiedError) as info, transaction.atomic():
        customer.save()
    assert (info.value.version, info.value.db_version) == (1, 2)
    assert row(Order, order.pk) == ("paid", "", 2)


def test_after_a_refused_transition_a_reload_shows_which_transitions_remain() -> None:
    order = Order.objects.create(reference="A-3")
    stale = Order.objects.get(pk=order.pk)
    order.pay()
    order.save()
    stale.cancel()
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.save()
    fresh = Order.objects.get(pk=order.pk)  # a protected FSMField is reloaded, not assigned
    fresh.cancel()
    fresh.save()
    assert row(Order, order.pk) == ("cancelled", "", 3)
    with pytest.raises(TransitionNotAllowed):
        fresh.ship()


def test_stale_edit_of_another_field_is_refused_too() -> None:
    order = Order.objects.create(reference="A-4")
    stale = Order.objects.get(pk=order.pk)
    order.pay()
    order.save(update_fields=["state"])
    stale.note = "gift wrap"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.save(update_fields=["note"])
    assert row(Order, order.pk) == ("paid", "", 2)


def test_mixin_and_version_field_accept_fresh_writes() -> None:
    order = GuardedOrder.objects.create(reference="B-1")
    order.pay()
    order.save()
    order.note = "priority"
    order.save()
    assert row(GuardedOrder, order.pk) == ("paid", "priority", 3)


def test_mixin_and_version_field_refuse_a_stale_transition_once_with_our_error() -> None:
    order = GuardedOrder.objects.create(reference="B-2")
    stale = GuardedOrder.objects.get(pk=order.pk)
    order.pay()
    order.save()
    stale.note = "changed my mind"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.save()
    assert row(GuardedOrder, order.pk) == ("paid", "", 2)


def test_version_field_warns_that_the_mixins_do_update_is_replaced() -> None:
    field = GuardedOrder._meta.get_field("version")
    assert isinstance(field, VersionField)
    [warning] = [m for m in field.check() if m.id == "concurrency.W010"]
    assert "ConcurrentTransitionMixin" in warning.msg
    assert warning.obj is GuardedOrder
    assert not [m for m in Order._meta.get_field("version").check() if m.id == "concurrency.W010"]


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_two_threads_paying_one_order_one_wins() -> None:
    order = Order.objects.create(reference="A-5")
    copies = [Order.objects.get(pk=order.pk), Order.objects.get(pk=order.pk)]
    outcome: list[str] = []

    def pay(copy: Order) -> None:
        try:
            with transaction.atomic():
                copy.pay()
                copy.save()
            outcome.append("saved")
        except RecordModifiedError:
            outcome.append("refused")

    run_together(*(partial(pay, copy) for copy in copies), wait=30)
    assert sorted(outcome) == ["refused", "saved"]
    assert row(Order, order.pk) == ("paid", "", 2)
