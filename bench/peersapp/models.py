"""Identical models for bench/peers.py, versioned by the library named in BENCH_PEER_LIB.

The same file is imported in each library's own virtualenv: ``ours`` (this
project), ``django-concurrency`` (which also imports as ``concurrency``) or
``django-optimistic-lock`` (``ool``). ``KINDS`` maps a label to each versioned model.
"""

import os

from django.db import models

LIB = os.environ.get("BENCH_PEER_LIB", "ours")


class Row(models.Model):
    name = models.CharField(max_length=40)
    amount = models.IntegerField(default=0)
    note = models.CharField(max_length=100, default="")

    class Meta:
        abstract = True
        app_label = "peersapp"


class Plain(Row):
    class Meta:
        app_label = "peersapp"


KINDS: dict[str, type[models.Model]] = {}

if LIB in ("ours", "django-concurrency"):
    from concurrency.fields import AutoIncVersionField, ConditionalVersionField, IntegerVersionField

    class Integer(Row):
        version = IntegerVersionField()

        class Meta:
            app_label = "peersapp"

    class AutoInc(Row):
        version = AutoIncVersionField()

        class Meta:
            app_label = "peersapp"

    class Conditional(Row):
        version = ConditionalVersionField()

        class Meta:
            app_label = "peersapp"

    KINDS = {
        "IntegerVersionField": Integer,
        "AutoIncVersionField": AutoInc,
        "ConditionalVersionField": Conditional,
    }
elif LIB == "django-optimistic-lock":
    from ool import VersionedMixin, VersionField

    class Ool(VersionedMixin, Row):  # type: ignore[misc]
        version = VersionField()

        class Meta:
            app_label = "peersapp"

    KINDS = {"VersionField": Ool}
else:
    raise RuntimeError(f"unknown BENCH_PEER_LIB {LIB!r}")
