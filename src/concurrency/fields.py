"""Model fields that hold a row's version."""

from __future__ import annotations

import time
from typing import Any

from django.core import checks
from django.db import models
from django.db.models.signals import class_prepared, pre_delete
from django.utils.translation import gettext_lazy as _

from . import core

__all__ = [
    "AutoIncVersionField",
    "IntegerVersionField",
    "VersionField",
]


class VersionField(models.BigIntegerField):
    """Base class of the version fields: a ``BigIntegerField`` that is checked.

    A model with a version field has every ``save()`` turned into a
    compare-and-swap on it, and every ``delete()`` checked against it.
    Subclasses choose the versions through ``initial_version`` and
    ``next_version``.
    """

    description = _("Record version")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", 0)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("default") == 0:
            del kwargs["default"]
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        if cls._meta.abstract:
            return
        if "_concurrencymeta" in cls.__dict__:
            # A second version field; concurrency.E001 reports it.
            return
        _manage(cls, self)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        model = self.model
        if model._meta.abstract:
            return errors
        fields = [f for f in model._meta.concrete_fields if isinstance(f, VersionField)]
        if len(fields) > 1 and fields[-1] is self:
            errors.append(
                checks.Error(
                    f"{model._meta.label} has more than one version field: "
                    + ", ".join(f.name for f in fields)
                    + ".",
                    hint="Keep one version field per model (and per inheritance chain).",
                    obj=model,
                    id="concurrency.E001",
                )
            )
        if getattr(model._meta, "is_composite_pk", False):
            errors.append(
                checks.Error(
                    f"{model._meta.label} has a composite primary key, "
                    "which versioned models do not support.",
                    hint="Use a single-column primary key, or remove the version field.",
                    obj=model,
                    id="concurrency.E002",
                )
            )
        return errors

    def initial_version(self, instance: models.Model) -> int:
        """Return the version of a newly inserted row."""
        return 1

    def next_version(self, instance: models.Model, old: Any) -> Any:
        """Return the version written by an update of a row at ``old``."""
        return (old or 0) + 1

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if add:
            # Called twice per insert on Django 6: keep the first value, and a
            # version the caller set (copies, explicit-pk creates) as it is.
            if not value:
                value = self.initial_version(model_instance)
                setattr(model_instance, self.attname, value)
            return value
        return core.CheckedVersion(value or 0)

    def formfield(self, **kwargs: Any) -> Any:
        """Return the hidden, signed ``concurrency.forms.VersionField`` (widget overridable)."""
        from .forms import VersionField as VersionFormField

        kwargs.setdefault("form_class", VersionFormField)
        return super().formfield(**kwargs)


class IntegerVersionField(VersionField):
    """A version that is the time of the write in microseconds since the epoch.

    It is strictly increasing per row (at least the old version plus one) and
    does not depend on the server's time zone. Versions of different rows do
    not collide in practice, which makes a signed version hard to replay.
    """

    def initial_version(self, instance: models.Model) -> int:
        return time.time_ns() // 1000

    def next_version(self, instance: models.Model, old: Any) -> int:
        return max((old or 0) + 1, time.time_ns() // 1000)


class AutoIncVersionField(VersionField):
    """A version that starts at 1 and grows by one on every update."""


def _manage(model: Any, field: VersionField) -> None:
    """Make ``model`` (concrete, or a proxy or child of one) versioned."""
    model._concurrencymeta = core.ConcurrencyOptions(model, field)
    model._do_update = core.versioned_do_update
    model.get_concurrency_version = _get_concurrency_version
    pre_delete.connect(
        core.check_delete,
        sender=model,
        weak=False,
        dispatch_uid=f"concurrency.check_delete.{model._meta.label}.{id(model)}",
    )


def _get_concurrency_version(self: Any) -> Any:
    return getattr(self, self._concurrencymeta.field.attname)


def _prepare_subclass(sender: type[models.Model], **kwargs: Any) -> None:
    """Give proxies and multi-table children of versioned models their own options."""
    if sender._meta.abstract or "_concurrencymeta" in sender.__dict__:
        return
    inherited = getattr(sender, "_concurrencymeta", None)
    if inherited is not None:
        _manage(sender, inherited.field)


# Connected at import time, not in AppConfig.ready(): models that use these
# fields are prepared while their module imports this one, before ready().
class_prepared.connect(_prepare_subclass, dispatch_uid="concurrency.prepare_subclass")
