"""Models for bench/fields.py: TriggerVersionField and ConditionalVersionField against plain twins."""

from django.db import models

from concurrency.fields import AutoIncVersionField, ConditionalVersionField, TriggerVersionField


class Plain(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    created = models.DateTimeField(null=True)

    class Meta:
        app_label = "fieldsapp"


class AutoInc(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    created = models.DateTimeField(null=True)
    version = AutoIncVersionField()

    class Meta:
        app_label = "fieldsapp"


class Trigger(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    created = models.DateTimeField(null=True)
    version = TriggerVersionField()

    class Meta:
        app_label = "fieldsapp"


class Conditional(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    created = models.DateTimeField(null=True)
    version = ConditionalVersionField()

    class Meta:
        app_label = "fieldsapp"
