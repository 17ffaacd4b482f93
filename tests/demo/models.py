"""Models of the demo site, also used by the test suite."""

from __future__ import annotations

import uuid

from django.db import models

from concurrency.aggregates import AggregateManager
from concurrency.fields import (
    AutoIncVersionField,
    ConditionalVersionField,
    IntegerVersionField,
    TriggerVersionField,
)
from concurrency.managers import VersionedManager


class Article(models.Model):
    """The demo's main model: edit it in two browser windows to see a conflict."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    status = models.CharField(
        max_length=20,
        choices=[("draft", "Draft"), ("review", "In review"), ("published", "Published")],
        default="draft",
    )
    version = AutoIncVersionField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.title


class ProxyArticle(Article):
    class Meta:
        proxy = True


class SimpleConcurrentModel(models.Model):
    username = models.CharField(max_length=30, blank=True, null=True, unique=True)
    counter = models.IntegerField(default=0)
    version = IntegerVersionField(db_comment="row version")

    def __str__(self) -> str:
        return self.username or ""


class Counter(models.Model):
    """Incremented by many threads in the race tests."""

    name = models.CharField(max_length=30, unique=True)
    value = models.IntegerField(default=0)
    version = AutoIncVersionField()


class PlainCounter(models.Model):
    """The same as Counter without a version: the race tests show it loses updates."""

    name = models.CharField(max_length=30, unique=True)
    value = models.IntegerField(default=0)


class VersionedBase(models.Model):
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()

    class Meta:
        abstract = True


class FromAbstract(VersionedBase):
    extra = models.CharField(max_length=30, blank=True)


class Parent(models.Model):
    """Multi-table inheritance with the version on the parent table."""

    name = models.CharField(max_length=30)
    version = AutoIncVersionField()


class Child(Parent):
    extra = models.CharField(max_length=30, blank=True)


class PlainParent(models.Model):
    """Multi-table inheritance with the version on the child table."""

    name = models.CharField(max_length=30)


class VersionedChild(PlainParent):
    extra = models.CharField(max_length=30, blank=True)
    version = AutoIncVersionField()


class CustomSave(models.Model):
    name = models.CharField(max_length=30)
    saves = models.IntegerField(default=0)
    version = AutoIncVersionField()

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.saves += 1
        super().save(*args, **kwargs)


class SelectOnSave(models.Model):
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()

    class Meta:
        select_on_save = True


class ExplicitPk(models.Model):
    code = models.CharField(max_length=20, primary_key=True)
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()


class UUIDPk(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()


class NoIncrement(models.Model):
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()

    class ConcurrencyMeta:
        increment = False


class Unchecked(models.Model):
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()

    class ConcurrencyMeta:
        enabled = False


class Category(models.Model):
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()

    class Meta:
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Item(models.Model):
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=30)
    version = AutoIncVersionField()

    def __str__(self) -> str:
        return self.name


class CustomVersionField(models.Model):
    """Standard field options honoured on a version field."""

    name = models.CharField(max_length=30)
    revision = AutoIncVersionField(
        db_column="rev", verbose_name="revision", help_text="bumped on every save", default=5
    )


# --- Forms, views and django-reversion (issue #3) ---------------------------


class Note(models.Model):
    """Kept under django-reversion in the tests: reverting must write the old values.

    Time-based versions are never issued twice for a row, so a revert (which
    writes the revision's old version back) cannot revive a stale editor's copy.
    """

    title = models.CharField(max_length=100)
    body = models.TextField(blank=True)
    version = IntegerVersionField()

    def __str__(self) -> str:
        return self.title


# --- Triggers and conditional versions (tests/fields/test_triggers.py, test_conditional.py, bench/fields.py)


class TriggerRow(models.Model):
    """The database keeps the version (migration 0003 creates the trigger)."""

    name = models.CharField(max_length=30)
    count = models.IntegerField(default=0)
    version = TriggerVersionField()


class NamedTriggerRow(models.Model):
    name = models.CharField(max_length=30)
    version = TriggerVersionField(trigger_name="named_row_version")


class PlainRow(models.Model):
    """TriggerRow without a version, for the benchmarks."""

    name = models.CharField(max_length=30)
    count = models.IntegerField(default=0)


class Tag(models.Model):
    name = models.CharField(max_length=30)

    def __str__(self) -> str:
        return self.name


class ConditionalArticle(models.Model):
    """Every field is checked."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    notes = models.TextField(blank=True, null=True)
    data = models.JSONField(null=True, blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)
    tags = models.ManyToManyField(Tag, blank=True, related_name="articles")
    version = ConditionalVersionField()


class PlainConditionalArticle(models.Model):
    """ConditionalArticle without a version, for the benchmarks."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    notes = models.TextField(blank=True, null=True)
    data = models.JSONField(null=True, blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)
    tags = models.ManyToManyField(Tag, blank=True, related_name="plain_articles")


class CheckFieldsArticle(models.Model):
    title = models.CharField(max_length=200)
    notes = models.TextField(blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)
    tags = models.ManyToManyField(Tag, blank=True, related_name="checked_articles")
    version = ConditionalVersionField()

    class ConcurrencyMeta:
        check_fields = ("title", "category")


class IgnoreFieldsArticle(models.Model):
    title = models.CharField(max_length=200)
    notes = models.TextField(blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="ignoring_articles")
    version = ConditionalVersionField()

    class ConcurrencyMeta:
        ignore_fields = ("notes", "tags")


class Person(models.Model):
    """A symmetrical many-to-many relation to itself."""

    name = models.CharField(max_length=30)
    friends = models.ManyToManyField("self", blank=True)
    version = ConditionalVersionField()


# -- Beyond the reference: retry helper, versioned bulk operations, conflict signal --


class Stock(models.Model):
    """Bulk-updated by the tests and bench/bulk.py."""

    name = models.CharField(max_length=30)
    quantity = models.IntegerField(default=0)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL)
    version = AutoIncVersionField()

    objects = VersionedManager()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name


class StampedStock(models.Model):
    """Stock with a time-based version."""

    name = models.CharField(max_length=30)
    quantity = models.IntegerField(default=0)
    version = IntegerVersionField()

    objects = VersionedManager()

    def __str__(self) -> str:
        return self.name


class UUIDStock(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=30)
    quantity = models.IntegerField(default=0)
    version = AutoIncVersionField()

    objects = VersionedManager()

    def __str__(self) -> str:
        return self.name


# -- Consistent reads (concurrency.api.verify_unchanged) --------------------------


class Doctor(models.Model):
    """The write-skew example: at least one doctor of a shift must stay on call."""

    name = models.CharField(max_length=30)
    shift = models.CharField(max_length=30)
    on_call = models.BooleanField(default=True)
    version = AutoIncVersionField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name


# -- Versioned aggregates (concurrency.aggregates) --------------------------------


class Order(models.Model):
    """An aggregate root: its lines are part of it."""

    customer = models.CharField(max_length=60)
    version = AutoIncVersionField()

    def __str__(self) -> str:
        return self.customer


class OrderLine(models.Model):
    """A child with no version of its own: writing it bumps its order's version."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.CharField(max_length=60)
    quantity = models.IntegerField(default=1)

    objects = AggregateManager()

    class Meta:
        ordering = ["pk"]

    class ConcurrencyMeta:
        aggregate_root = "order"

    def __str__(self) -> str:
        return self.product


class PlainOrder(models.Model):
    """Order without aggregate lines, for the benchmark."""

    customer = models.CharField(max_length=60)
    version = AutoIncVersionField()


class PlainOrderLine(models.Model):
    order = models.ForeignKey(PlainOrder, on_delete=models.CASCADE, related_name="lines")
    product = models.CharField(max_length=60)
    quantity = models.IntegerField(default=1)


# -- Aggregates over every write path (tests/core/test_aggregate_paths.py) --------------


class Shipment(models.Model):
    """A nested root: part of its order, and the root of its parcels."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    carrier = models.CharField(max_length=60, default="")
    version = AutoIncVersionField()

    class ConcurrencyMeta:
        aggregate_root = "order"


class Parcel(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="parcels")
    weight = models.IntegerField(default=1)

    class ConcurrencyMeta:
        aggregate_root = "shipment"


class Ledger(models.Model):
    """A root referred to by a key other than its primary key."""

    code = models.CharField(max_length=20, unique=True)
    version = AutoIncVersionField()


class LedgerEntry(models.Model):
    ledger = models.ForeignKey(Ledger, to_field="code", on_delete=models.CASCADE, related_name="entries")
    amount = models.IntegerField(default=0)

    class ConcurrencyMeta:
        aggregate_root = "ledger"


class Worker(models.Model):
    name = models.CharField(max_length=60)


class Task(models.Model):
    """A child with a version of its own, an optional root, and other parents."""

    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=60, default="")
    worker = models.ForeignKey(Worker, null=True, on_delete=models.SET_NULL, related_name="tasks")
    backup = models.ForeignKey(
        Worker, null=True, default=None, on_delete=models.SET_DEFAULT, related_name="backup_tasks"
    )
    crew = models.ForeignKey(Worker, null=True, on_delete=models.CASCADE, related_name="crew_tasks")
    version = AutoIncVersionField()

    class ConcurrencyMeta:
        aggregate_root = "order"
