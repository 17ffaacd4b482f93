"""Models as the project declared them for django-concurrency."""

from __future__ import annotations

from collections.abc import Callable

from django.db import models

from concurrency.api import concurrency_disable_increment
from concurrency.fields import AutoIncVersionField, ConditionalVersionField, IntegerVersionField
from concurrency.utils import fqn


class Job(models.Model):
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="queued")
    result = models.TextField(blank=True)
    task_id = models.CharField(max_length=50, blank=True)
    task_name = models.CharField(max_length=200, blank=True)
    version = AutoIncVersionField()

    def enqueue(self, task: Callable[[int], str]) -> None:
        """Start ``task`` for this job and record which task it was, without a new version.

        The task runs eagerly in tests (a fast worker in production) and
        saves the job before this bookkeeping does: django-concurrency let
        the stale bookkeeping save through, this library refuses it.
        """
        task_id = task(self.pk)
        with concurrency_disable_increment(self):
            self.task_id = task_id
            self.task_name = fqn(task)
            self.save(update_fields=["task_id", "task_name"])


class Report(models.Model):
    title = models.CharField(max_length=100)
    version = IntegerVersionField(verbose_name="revision", db_column="rev", help_text="bumped on every save")


class Label(models.Model):
    name = models.CharField(max_length=50)
    colour = models.CharField(max_length=20, blank=True)
    version = ConditionalVersionField()

    class ConcurrencyMeta:
        check_fields = ["name"]
