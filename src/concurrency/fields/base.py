"""The version field and the fields whose versions the client decides."""

from __future__ import annotations

import time
from typing import Any

from django.core import checks
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.db.models.query_utils import DeferredAttribute
from django.utils.translation import gettext_lazy as _

from ..core import model as versioned_model
from ..core import rows, tracking
from ..core.options import declared_options
from ..core.update import CheckedVersion, versioned_do_update
from ..core.watch import is_row_hook


class _VersionAttribute(DeferredAttribute):
    """The instance attribute of a version field.

    Reading it gives back the version of a write that rolled back
    (``tracking.settle``), so neither a save nor a form ever sees a number the
    row never committed. Assigning it (``refresh_from_db()``, a form, a test)
    replaces what the library tracked about earlier writes.
    """

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        data = instance.__dict__
        if tracking.WRITES in data:
            tracking.settle(instance)
        try:
            return data[self.field.attname]
        except KeyError:
            value = super().__get__(instance, cls)
        # Deferred (only()/defer()) and loaded now: newer than the rest of the
        # row, so a checked write of this instance is refused (tracking.version_to_check).
        data[tracking.LATE] = True
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        data = instance.__dict__
        attname = self.field.attname
        if attname in data:  # not while the instance is built
            state = data.get("_state")
            if (
                state is not None
                and rows.ROW in state.__dict__
                and (tracking.WRITES in data or data[attname] != value)
            ):
                # Another version (or one a write in flight gave it): the row the
                # instance was loaded with may not be the row at this one. The
                # version it holds, posted back by a form, keeps it.
                del state.__dict__[rows.ROW]
        data[attname] = value
        if tracking.WRITES in data:
            del data[tracking.WRITES]
        if tracking.LATE in data:
            del data[tracking.LATE]


class VersionField(models.BigIntegerField):
    """Base class of the version fields: a ``BigIntegerField`` that is checked.

    A model with a version field has every ``save()`` turned into a
    compare-and-swap on it, and every ``delete()`` checked against it.
    Subclasses choose the versions through ``initial_version`` and
    ``next_version``.
    """

    description = _("Record version")
    descriptor_class = _VersionAttribute

    #: The database decides the version an UPDATE stores (a trigger, or an SQL
    #: expression from ``update_version``); the core reads the stored value
    #: back into the instance instead of assuming it.
    version_from_db = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", 0)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        # Written as django-concurrency 2.8.1 writes it, ``default=0`` and its
        # help text always present, so that a project switching over needs no
        # migration (docs/guide/migrating.rst). Neither reaches the database;
        # the help text is django-concurrency's default, which only the
        # migration state carries (the field itself has none).
        name, path, args, kwargs = super().deconstruct()
        if path.startswith("concurrency.fields."):
            # The public path, whichever module of the package defines the class.
            path = f"concurrency.fields.{type(self).__name__}"
        if not kwargs.get("help_text"):
            kwargs["help_text"] = "record revision number"
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        if _is_history_copy(cls):
            # django-simple-history copies every field into its historical
            # model; there the version is a record of what was saved, never
            # checked, so the copy becomes the plain integer it stores.
            self.__class__ = models.BigIntegerField  # type: ignore[assignment]
            models.BigIntegerField.contribute_to_class(self, cls, name, private_only=private_only)
            return
        super().contribute_to_class(cls, name, private_only=private_only)
        if cls._meta.abstract:
            return
        if declared_options(cls) is not None:
            # A second version field; concurrency.E001 reports it.
            return
        versioned_model.manage(cls, self)

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
        override = _foreign_do_update(model)
        if override is not None:
            errors.append(
                checks.Warning(
                    f"{model._meta.label} inherits _do_update() from {override.__qualname__}, "
                    "which its version field replaces: that override is never called.",
                    hint="The version check refuses every stale save on its own; drop the override "
                    "(see 'Using with other libraries' in the documentation).",
                    obj=model,
                    id="concurrency.W010",
                )
            )
        return errors

    def initial_version(self, instance: models.Model) -> int:
        """Return the version of a newly inserted row."""
        return 1

    def next_version(self, instance: models.Model, old: Any) -> Any:
        """Return the version written by an update of a row at ``old``."""
        return (old or 0) + 1

    def update_version(
        self, instance: models.Model, old: Any, values: list[tuple[Any, Any, Any]], incremented: bool
    ) -> Any:
        """Return what the UPDATE writing ``values`` sets the version to: a value or an expression.

        ``incremented`` is false under ``concurrency_disable_increment`` or
        ``ConcurrencyMeta.increment = False``.
        """
        return self.next_version(instance, old) if incremented else old

    def stored_version(self, connection: Any, old: Any, new: Any) -> Any:
        """Return the version a checked UPDATE setting ``new`` leaves in the row, or None if unknown.

        Asked for ``version_from_db`` fields only, after the UPDATE matched
        ``version = old``; None makes the core read the stored value back.
        A plain value is what the row holds; an expression, only the
        database knows.
        """
        return None if hasattr(new, "resolve_expression") else new

    def returns_stored(self, connection: Any) -> bool:
        """Return whether the version an UPDATE computes is the one stored.

        When it is, the core reads it back with the UPDATE itself
        (``RETURNING``, or ``LAST_INSERT_ID()`` on MariaDB and MySQL);
        otherwise with a ``SELECT`` after it, in the same transaction.
        """
        return True

    def next_version_expression(self, values: list[tuple[Any, Any, Any]]) -> Any:
        """Return what a queryset ``update()`` writing ``values`` sets the version to, as SQL.

        The set-based twin of ``update_version`` (``VersionedQuerySet.update()``
        has no instances to ask); ``None`` leaves the version as it is.
        """
        return F(self.attname) + 1

    def bump_expression(self) -> tuple[Any, bool]:
        """Return the SQL that moves a row's version whatever changed, and whether it is the old one plus one.

        An aggregate root's version moves this way when a child row is written
        (``concurrency.aggregates``); only a known "plus one" lets the new
        version be known without reading it back.
        """
        expression = self.next_version_expression([])
        return (F(self.attname) + 1 if expression is None else expression), False

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if add:
            # Called twice per insert on Django 6: keep the first value, and a
            # version the caller set (copies, explicit-pk creates) as it is.
            if not value:
                value = self.initial_version(model_instance)
                setattr(model_instance, self.attname, value)
            return value
        return CheckedVersion(value or 0)

    def formfield(self, **kwargs: Any) -> Any:
        """Return the hidden, signed ``concurrency.forms.VersionField`` (widget overridable)."""
        from django import forms

        from ..forms import VersionField as VersionFormField

        kwargs.setdefault("form_class", VersionFormField)
        widget = kwargs.get("widget")
        if isinstance(widget, forms.NumberInput) or (
            isinstance(widget, type) and issubclass(widget, forms.NumberInput)
        ):
            # The admin's default widget for big integers: a browser would blank
            # the signed (non-numeric) value. A widget given for version fields
            # (Meta.widgets, formfield_overrides[VersionField]) is kept.
            del kwargs["widget"]
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

    def next_version_expression(self, values: list[tuple[Any, Any, Any]]) -> Any:
        return Greatest(
            F(self.attname) + 1, Value(time.time_ns() // 1000), output_field=models.BigIntegerField()
        )


class AutoIncVersionField(VersionField):
    """A version that starts at 1 and grows by one on every update."""

    def bump_expression(self) -> tuple[Any, bool]:
        expression = self.next_version_expression([])
        if expression is None:
            return F(self.attname) + 1, True
        # A subclass's own expression may not add one.
        return expression, type(self) is AutoIncVersionField


def _is_history_copy(model: type) -> bool:
    """Return whether ``model`` is a historical model of django-simple-history being built."""
    return isinstance(model.__dict__.get("instance_type"), type) and any(
        f"{klass.__module__}.{klass.__qualname__}" == "simple_history.models.HistoricalChanges"
        for klass in model.__mro__
    )


def _foreign_do_update(model: type[models.Model]) -> type | None:
    """Return the class, other than Django's and ours, whose ``_do_update`` ``model`` would have had."""
    for klass in model.__mro__[1:]:
        method = klass.__dict__.get("_do_update")
        if method is not None:
            if klass is models.Model or method is versioned_do_update or is_row_hook(method):
                return None
            return klass
    return None
