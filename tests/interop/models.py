"""Small, realistic versioned models built with other popular Django libraries."""

from __future__ import annotations

from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from model_utils import FieldTracker
from model_utils.managers import InheritanceManager
from model_utils.models import SoftDeletableModel, TimeStampedModel
from polymorphic.models import PolymorphicModel
from simple_history.models import HistoricalRecords

from concurrency.fields import AutoIncVersionField, IntegerVersionField

# -- django-fsm-2 ---------------------------------------------------------------


class Order(models.Model):
    """An order moving through states; the version field guards every write."""

    reference = models.CharField(max_length=20)
    state = FSMField(default="new", protected=True)
    note = models.CharField(max_length=100, blank=True)
    version = AutoIncVersionField()

    @transition(field=state, source="new", target="paid")
    def pay(self) -> None:
        pass

    @transition(field=state, source="paid", target="shipped")
    def ship(self) -> None:
        pass

    @transition(field=state, source=["new", "paid"], target="cancelled")
    def cancel(self) -> None:
        pass


class GuardedOrder(ConcurrentTransitionMixin, models.Model):
    """django-fsm-2's own optimistic mixin beside a version field (concurrency.W010)."""

    reference = models.CharField(max_length=20)
    state = FSMField(default="new")
    note = models.CharField(max_length=100, blank=True)
    version = AutoIncVersionField()

    @transition(field=state, source="new", target="paid")
    def pay(self) -> None:
        pass


# -- django-simple-history --------------------------------------------------------


class Document(models.Model):
    title = models.CharField(max_length=100)
    body = models.TextField(blank=True)
    version = AutoIncVersionField()
    history = HistoricalRecords()


class Memo(models.Model):
    """A time-based version (IntegerVersionField) with history."""

    text = models.CharField(max_length=100)
    version = IntegerVersionField()
    history = HistoricalRecords()


# -- django-model-utils -------------------------------------------------------------


class Task(TimeStampedModel, SoftDeletableModel):
    title = models.CharField(max_length=100)
    done = models.BooleanField(default=False)
    version = AutoIncVersionField()
    tracker = FieldTracker(fields=["title", "done"])


class Vehicle(models.Model):
    name = models.CharField(max_length=100)
    version = AutoIncVersionField()

    objects = InheritanceManager()


class Car(Vehicle):
    seats = models.PositiveSmallIntegerField(default=4)


class Bike(Vehicle):
    gears = models.PositiveSmallIntegerField(default=1)


# -- django-polymorphic ---------------------------------------------------------------


class Project(PolymorphicModel):
    name = models.CharField(max_length=100)
    version = AutoIncVersionField()

    def __str__(self) -> str:
        return self.name


class ArtProject(Project):
    artist = models.CharField(max_length=100)


class ResearchProject(Project):
    supervisor = models.CharField(max_length=100)


# -- django-import-export ----------------------------------------------------------------


class Book(models.Model):
    isbn = models.CharField(max_length=13, unique=True)
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    version = AutoIncVersionField()


# -- django-ninja -----------------------------------------------------------------------


class Ticket(models.Model):
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=20, default="open")
    version = AutoIncVersionField()


# -- strawberry-graphql-django ----------------------------------------------------------


class Recipe(models.Model):
    name = models.CharField(max_length=200)
    servings = models.PositiveSmallIntegerField(default=2)
    version = AutoIncVersionField()
