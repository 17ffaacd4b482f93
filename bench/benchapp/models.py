"""Identical models with and without a version field, for the benchmarks."""

from django.db import models

from concurrency.fields import (
    AutoIncVersionField,
    ConditionalVersionField,
    IntegerVersionField,
    TriggerVersionField,
)


class Plain(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")

    class Meta:
        app_label = "benchapp"


class AutoInc(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    version = AutoIncVersionField()

    class Meta:
        app_label = "benchapp"


class Integer(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    version = IntegerVersionField()

    class Meta:
        app_label = "benchapp"


class Trigger(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    version = TriggerVersionField()

    class Meta:
        app_label = "benchapp"


class Conditional(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    version = ConditionalVersionField()

    class Meta:
        app_label = "benchapp"


class PlainTrigger(models.Model):
    """An unversioned model whose table gets the same trigger as ``Trigger``: the trigger's own cost."""

    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    version = models.BigIntegerField(default=1)

    class Meta:
        app_label = "benchapp"
