"""django-model-utils: FieldTracker, TimeStampedModel, SoftDeletableModel, InheritanceManager."""

from __future__ import annotations

import pytest
from django.db import transaction

from concurrency.exceptions import RecordModifiedError
from tests.interop.models import Bike, Car, Task, Vehicle

pytestmark = pytest.mark.django_db


def test_tracker_sees_the_saved_change_and_resets_after_the_save() -> None:
    task = Task.available_objects.create(title="write docs")
    task.title = "write the docs"
    assert task.tracker.changed() == {"title": "write docs"}
    task.save()
    assert task.tracker.changed() == {}
    assert Task.available_objects.get(pk=task.pk).version == 2


def test_refused_save_keeps_the_values_but_the_tracker_forgets_them() -> None:
    task = Task.available_objects.create(title="write docs")
    stale = Task.available_objects.get(pk=task.pk)
    task.done = True
    task.save()
    stale.title = "write more docs"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.save()
    assert Task.available_objects.get(pk=task.pk).title == "write docs"
    assert stale.title == "write more docs"
    # FieldTracker resets its saved state when save_base() exits, even by an
    # exception: after a refused save it reports no change (documented).
    assert stale.tracker.changed() == {}
    stale.refresh_from_db()
    assert (stale.title, stale.done, stale.version) == ("write docs", True, 2)


def test_tracker_update_fields_save_is_checked() -> None:
    task = Task.available_objects.create(title="a")
    stale = Task.available_objects.get(pk=task.pk)
    task.title = "b"
    task.save()
    stale.done = True
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.save(update_fields=["done"])
    assert Task.available_objects.get(pk=task.pk).done is False


def test_timestamps_move_only_with_saved_writes() -> None:
    task = Task.available_objects.create(title="a")
    created, modified = task.created, task.modified
    stale = Task.available_objects.get(pk=task.pk)
    task.title = "b"
    task.save()
    row = Task.available_objects.get(pk=task.pk)
    assert row.created == created and row.modified > modified
    stale.title = "c"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.save()
    assert Task.available_objects.get(pk=task.pk).modified == row.modified


def test_soft_delete_is_a_checked_save() -> None:
    task = Task.available_objects.create(title="a")
    task.delete()
    assert not Task.available_objects.filter(pk=task.pk).exists()  # hidden from the default manager
    row = Task.all_objects.get(pk=task.pk)
    assert (row.is_removed, row.version) == (True, 2)


def test_soft_delete_of_a_stale_instance_is_refused_and_the_row_stays_visible() -> None:
    task = Task.available_objects.create(title="a")
    stale = Task.available_objects.get(pk=task.pk)
    task.done = True
    task.save()
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.delete()
    row = Task.available_objects.get(pk=task.pk)
    assert (row.is_removed, row.done, row.version) == (False, True, 2)


def test_hard_delete_of_a_stale_instance_is_refused() -> None:
    task = Task.available_objects.create(title="a")
    stale = Task.available_objects.get(pk=task.pk)
    task.save()
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.delete(soft=False)
    assert Task.all_objects.filter(pk=task.pk).exists()


def test_select_subclasses_returns_children_whose_saves_are_checked() -> None:
    car = Car.objects.create(name="estate", seats=5)
    Bike.objects.create(name="tourer", gears=21)
    vehicles = {type(v): v for v in Vehicle.objects.select_subclasses()}
    assert set(vehicles) == {Car, Bike}
    stale_car = vehicles[Car]
    car.seats = 7
    car.save()
    stale_car.name = "van"
    with pytest.raises(RecordModifiedError) as info, transaction.atomic():
        stale_car.save()
    assert (info.value.version, info.value.db_version) == (1, 2)
    row = Car.objects.get(pk=car.pk)
    assert (row.name, row.seats, row.version) == ("estate", 7, 2)


def test_parent_instance_and_child_instance_share_one_version() -> None:
    car = Car.objects.create(name="estate")
    as_vehicle = Vehicle.objects.get(pk=car.pk)  # a plain parent row
    child = Vehicle.objects.get_subclass(pk=car.pk)
    child.seats = 2
    child.save()
    as_vehicle.name = "coupe"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        as_vehicle.save()
    assert Vehicle.objects.get(pk=car.pk).version == 2
