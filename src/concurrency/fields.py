"""Model fields that hold a row's version."""

from __future__ import annotations

import functools
import re
import time
from typing import Any

from django.apps import apps as global_apps
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import F, Value
from django.db.models.expressions import Expression
from django.db.models.functions import Greatest
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import class_prepared, m2m_changed, pre_delete
from django.utils.translation import gettext_lazy as _

from . import core
from .triggers import is_default_factory

__all__ = [
    "AutoIncVersionField",
    "ConditionalVersionField",
    "IntegerVersionField",
    "TriggerVersionField",
    "VersionField",
]


class _VersionAttribute(DeferredAttribute):
    """The instance attribute of a version field.

    Reading it gives back the version of a write that rolled back
    (``core.settle``), so neither a save nor a form ever sees a number the
    row never committed. Assigning it (``refresh_from_db()``, a form, a test)
    replaces what the library tracked about earlier writes.
    """

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        data = instance.__dict__
        if core.WRITES in data:
            core.settle(instance)
        try:
            return data[self.field.attname]
        except KeyError:
            value = super().__get__(instance, cls)
        # Deferred (only()/defer()) and loaded now: newer than the rest of the
        # row, so a checked write of this instance is refused (core.held_version).
        data[core.LATE] = True
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        data = instance.__dict__
        attname = self.field.attname
        if attname in data:  # not while the instance is built
            state = data.get("_state")
            if (
                state is not None
                and core.ROW in state.__dict__
                and (core.WRITES in data or data[attname] != value)
            ):
                # Another version (or one a write in flight gave it): the row the
                # instance was loaded with may not be the row at this one. The
                # version it holds, posted back by a form, keeps it.
                del state.__dict__[core.ROW]
        data[attname] = value
        if core.WRITES in data:
            del data[core.WRITES]
        if core.LATE in data:
            del data[core.LATE]


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
        from django import forms

        from .forms import VersionField as VersionFormField

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


class TriggerVersionField(VersionField):
    """A version kept by a database trigger, so writes made outside Django bump it too.

    ``QuerySet.update()``, raw SQL and other programs all move the version,
    which makes instances loaded before such a write fail to save. A save
    writes ``version = version + 1`` itself (the trigger stands aside when an
    UPDATE raises the version) and the instance gets the stored version back
    from the database. The triggers are created by the ``CreateTrigger``
    migration operation, after ``migrate`` (``CONCURRENCY_AUTO_CREATE_TRIGGERS``)
    or by ``manage.py triggers create``.
    """

    version_from_db = True

    def __init__(self, *args: Any, trigger_name: str | None = None, **kwargs: Any) -> None:
        self._trigger_name = trigger_name
        super().__init__(*args, **kwargs)

    @property
    def trigger_name(self) -> str:
        """Return the name of the trigger in the database (always ``concurrency_...``)."""
        from .triggers import get_trigger_name

        return get_trigger_name(self)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self._trigger_name:
            kwargs["trigger_name"] = self._trigger_name
        return name, path, args, kwargs

    def update_version(
        self, instance: models.Model, old: Any, values: list[tuple[Any, Any, Any]], incremented: bool
    ) -> Any:
        # Increment switches do not apply: the trigger would bump anyway, and
        # on SQLite (whose triggers run after RETURNING is computed) the
        # statement must make the bump itself for the value returned to be
        # the one stored.
        return _Increment(self)

    def stored_version(self, connection: Any, old: Any, new: Any) -> Any:
        # The library's own triggers keep a version the statement raised, so
        # version + 1 over a row matched at ``old`` stores old + 1. A trigger
        # of a project's own factory may store anything: read it back.
        if (
            isinstance(new, _Increment)
            and isinstance(old, int)
            and not isinstance(old, bool)
            and is_default_factory(connection)
        ):
            return old + 1
        return None

    def returns_stored(self, connection: Any) -> bool:
        # Another trigger may change the row after RETURNING or
        # LAST_INSERT_ID() took the statement's value (SQLite's AFTER
        # triggers, MySQL's BEFORE triggers).
        return is_default_factory(connection)


class _Increment(Expression):
    """``<version column> + 1``, ready to compile: nothing to resolve on the hot path."""

    def __init__(self, field: models.Field) -> None:
        super().__init__(output_field=field)
        self.version_field = field

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _Increment:
        return self

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return f"{connection.ops.quote_name(self.version_field.column)} + 1", []


# Column types whose comparisons follow a collation: the text types of the
# supported backends, as ``Field.db_type()`` spells them.
_TEXT_TYPE = re.compile(
    r"(?:(?:long|medium|tiny)?text|n?(?:var)?char|character(?: varying)?)(?:\(\d+\))?", re.IGNORECASE
)


def _is_text(field: models.Field, connection: Any) -> bool:
    return bool(_TEXT_TYPE.fullmatch(field.db_type(connection) or ""))


class _BumpIfChanged(Expression):
    """``CASE WHEN <a column differs from the value written to it> THEN v + 1 ELSE v END``.

    Column references in a SET clause read the row as it was before the
    UPDATE (MySQL only while no earlier assignment changed them, hence the
    version first in the SET clause). "Differs" is NULL-safe and, for text,
    byte for byte: a collation that calls two strings equal ('report' and
    'REPORT' under a case-insensitive one, 'a' and 'a ' under PAD SPACE) must
    not hide a change. The SQL of each column's test is built once per vendor
    (``ConditionalVersionField._tests``), by the ``as_<vendor>`` methods.
    """

    # Whatever the values are, Django checks them in their own SET assignments.
    contains_aggregate = False
    contains_over_clause = False

    def __init__(
        self, field: ConditionalVersionField, pairs: list[tuple[Any, Any]], resolved: bool = False
    ) -> None:
        super().__init__(output_field=field)
        self.version_field = field
        self.pairs = pairs
        # Plain values only: nothing to resolve on each of the compiler's calls.
        self.resolved = resolved

    def resolve_expression(self, query: Any = None, *args: Any, **kwargs: Any) -> _BumpIfChanged:
        if self.resolved:
            return self
        clone = self.copy()
        clone.resolved = True
        clone.pairs = [
            (field, value.resolve_expression(query, *args, **kwargs))
            if hasattr(value, "resolve_expression")
            else (field, value)
            for field, value in self.pairs
        ]
        return clone

    # Each returns the test's SQL around the value's: (before, after).
    @staticmethod
    def _standard(column: str, text: bool) -> tuple[str, str]:
        return f"{column} IS DISTINCT FROM ", ""

    @staticmethod
    def _sqlite(column: str, text: bool) -> tuple[str, str]:
        # An explicit COLLATE wins over the column's own (NOCASE, RTRIM, ...).
        return f"{column}{' COLLATE BINARY' if text else ''} IS NOT ", ""

    @staticmethod
    def _postgresql(column: str, text: bool) -> tuple[str, str]:
        # "C" is deterministic: equal means byte for byte, whatever the
        # column's (possibly nondeterministic ICU) collation says.
        collate = ' COLLATE "C"' if text else ""
        return f"{column}{collate} IS DISTINCT FROM ", ""

    @staticmethod
    def _mysql(column: str, text: bool) -> tuple[str, str]:
        # Binary strings compare bytes: no case or accent folding, no PAD SPACE.
        if text:
            return f"NOT (CAST({column} AS BINARY) <=> CAST(", " AS BINARY))"
        return f"NOT ({column} <=> ", ")"

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return self._render(compiler, connection, self._standard)

    def as_sqlite(self, compiler: Any, connection: Any) -> Any:
        return self._render(compiler, connection, self._sqlite)

    def as_postgresql(self, compiler: Any, connection: Any) -> Any:
        return self._render(compiler, connection, self._postgresql)

    def as_mysql(self, compiler: Any, connection: Any) -> Any:
        return self._render(compiler, connection, self._mysql)

    def _render(self, compiler: Any, connection: Any, test: Any) -> Any:
        tests = self.version_field._tests
        vendor = connection.vendor
        sql: list[str] = []
        params: list[Any] = []
        for field, value in self.pairs:
            key = (vendor, field.column)
            try:
                before, after, placeholder = tests[key]
            except KeyError:
                before, after = test(connection.ops.quote_name(field.column), _is_text(field, connection))
                placeholder = hasattr(field, "get_placeholder")
                tests[key] = before, after, placeholder
            if hasattr(value, "as_sql"):
                value_sql, value_params = compiler.compile(value)
                params.extend(value_params)
            else:
                value = field.get_db_prep_save(value, connection=connection)
                value_sql = field.get_placeholder(value, compiler, connection) if placeholder else "%s"
                params.append(value)
            sql.append(before + value_sql + after)
        try:
            (end,) = tests[vendor]
        except KeyError:
            version = connection.ops.quote_name(self.version_field.column)
            (end,) = tests[vendor] = (f" THEN {version} + 1 ELSE {version} END",)
        return "CASE WHEN " + " OR ".join(sql) + end, params


class ConditionalVersionField(AutoIncVersionField):
    """An AutoInc version bumped only when a checked field changes.

    The checked fields are ``ConcurrencyMeta.check_fields``, or every field
    (many-to-many ones included) but the version and
    ``ConcurrencyMeta.ignore_fields``. A checked save of an instance loaded
    from the database compares the values written with the values it was
    loaded with (a reference to the row, kept by ``from_db``): the row matched
    by ``WHERE version = <old>`` is that row, as every change of a checked
    field moves the version. The UPDATE is then a plain one, with or without
    the next version. Otherwise (an instance that was not loaded, an unchecked
    write, expressions, values whose types Python cannot compare as the
    database does) the UPDATE itself compares each checked column with the
    value written to it, ``SET version = CASE WHEN <a column changed> THEN
    version + 1 ELSE version END``, and the stored version is read back. A
    save is checked against the version even when it does not bump it.
    Changing the membership of a checked many-to-many field bumps the version
    at once (checked, for the instance in hand).
    """

    version_from_db = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checked: dict[type[models.Model], frozenset[str]] = {}
        # model -> {attname of a checked column: its position in a loaded row}
        self._positions: dict[type[models.Model], dict[str, int]] = {}
        # (vendor, column) -> the SQL around a value in _BumpIfChanged.
        self._tests: dict[Any, Any] = {}

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        # Copies made for the children of an abstract model start afresh:
        # the cached SQL is per table.
        self._checked, self._positions, self._tests = {}, {}, {}
        super().contribute_to_class(cls, name, private_only=private_only)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        model = self.model
        if model._meta.abstract or "_concurrencymeta" not in model.__dict__:
            return errors
        options = model._concurrencymeta  # type: ignore[attr-defined]
        if options.check_fields is not None and options.ignore_fields is not None:
            errors.append(
                checks.Error(
                    f"{model._meta.label}.ConcurrencyMeta sets both check_fields and ignore_fields.",
                    hint="Set one of them: the fields to check, or the fields to ignore.",
                    obj=model,
                    id="concurrency.E103",
                )
            )
            return errors
        for attr in ("check_fields", "ignore_fields"):
            for name in getattr(options, attr) or ():
                try:
                    model._meta.get_field(name)
                except FieldDoesNotExist:
                    errors.append(
                        checks.Error(
                            f"{model._meta.label}.ConcurrencyMeta.{attr} names {name!r}, "
                            "which is not a field.",
                            hint="Use the names of the model's fields (foreign keys by name).",
                            obj=model,
                            id="concurrency.E104",
                        )
                    )
        return errors

    def checked_fields(self, model: type[models.Model]) -> frozenset[str]:
        """Return the names of the fields of ``model`` whose changes bump the version."""
        try:
            return self._checked[model]
        except KeyError:
            pass
        options = model._concurrencymeta  # type: ignore[attr-defined]
        opts = model._meta
        if options.check_fields is not None:
            names = {opts.get_field(name).name for name in options.check_fields}
        else:
            ignored = {opts.get_field(name).name for name in options.ignore_fields or ()}
            candidates = [*opts.concrete_fields, *opts.many_to_many]
            names = {f.name for f in candidates if not f.primary_key and f.name not in ignored}
        names.discard(self.name)
        self._checked[model] = frozenset(names)
        return self._checked[model]

    def update_version(
        self, instance: models.Model, old: Any, values: list[tuple[Any, Any, Any]], incremented: bool
    ) -> Any:
        if not incremented:
            return old
        # Decided here when the instance holds the row it was loaded with at
        # ``old``, which a checked write (WHERE version = old) can only meet
        # (an unchecked one forgets it: core._loaded_version).
        row = core.loaded_row(instance, old)
        if row is not None:
            compared = self._compared(type(instance))
            immutable = core.IMMUTABLE_TYPES
            written = changed = False
            for field, _model, value in values:
                position = compared.get(field.attname)
                if position is None:
                    continue
                written = True
                before = row[position]
                kind = type(value)
                if kind is type(before) and kind in immutable:
                    if value is before or value == before:
                        continue
                elif value is not None and before is not None:
                    break  # compared by the database
                # A different value, or NULL and a value (IS DISTINCT FROM).
                changed = True
                break
            else:
                if not written:
                    return old
                # Equal to what was loaded: the row may still differ, since a write
                # under concurrency_disable_increment elsewhere keeps the version;
                # the database compares, as for an instance that was not loaded.
            if changed:
                return self.next_version(instance, old)
        checked = self.checked_fields(type(instance))
        pairs = []
        plain = True
        for field, _model, value in values:
            if field.name in checked:
                pairs.append((field, value))
                if plain and hasattr(value, "resolve_expression"):
                    plain = False
        return _BumpIfChanged(self, pairs, plain) if pairs else old

    def _compared(self, model: type[models.Model]) -> dict[str, int]:
        """Return the position in a loaded row (``core.row_positions``) of each checked column, by attname."""
        try:
            return self._positions[model]
        except KeyError:
            checked = self.checked_fields(model)
            positions = core.row_positions(model)
            concrete = [f for f in model._meta.concrete_fields if f.name in checked]
            self._positions[model] = {f.attname: positions[f.attname] for f in concrete}
            return self._positions[model]

    def next_version_expression(self, values: list[tuple[Any, Any, Any]]) -> Any:
        checked = self.checked_fields(self.model)
        pairs = [(field, value) for field, _model, value in values if field.name in checked]
        return _BumpIfChanged(self, pairs) if pairs else None


def _manage(model: Any, field: VersionField) -> None:
    """Make ``model`` (concrete, or a proxy or child of one) versioned."""
    model._concurrencymeta = core.ConcurrencyOptions(model, field)
    model._do_update = core.versioned_do_update
    model.get_concurrency_version = _get_concurrency_version
    core.keep_transaction_usable(model)
    if isinstance(field, TriggerVersionField):
        _accept_refetch(model)
    if isinstance(field, ConditionalVersionField):
        core.keep_loaded_rows(model)
    if model._meta.apps is not global_apps:
        # A historical model rendered by migrations: saves are checked, but
        # deletes are not, so that long migrate runs leave no receivers behind.
        return
    pre_delete.connect(
        core.check_delete, sender=model, dispatch_uid=f"concurrency.check_delete.{model._meta.label}"
    )


def _accept_refetch(model: Any) -> None:
    """Let ``save()`` take django-concurrency's ``refetch`` keyword (models with a TriggerVersionField).

    django-concurrency assumed its trigger added one, and offered
    ``save(refetch=True)`` to read the stored version instead. Here the save
    always reads the stored version back in the UPDATE itself, so the keyword
    costs nothing; with it, ``save()`` returns the instance, as
    django-concurrency returned its refetched copy. The model's own ``save()``
    (or the one it inherits) is wrapped once per class that defines one.
    """
    save = model.save
    if getattr(save, "_concurrency_refetch", False):
        return

    @functools.wraps(save)
    def save_accepting_refetch(self: Any, *args: Any, refetch: bool = False, **kwargs: Any) -> Any:
        save(self, *args, **kwargs)
        return self if refetch else None

    save_accepting_refetch._concurrency_refetch = True  # type: ignore[attr-defined]
    model.save = save_accepting_refetch


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
            if klass is models.Model or method is core.versioned_do_update or core.is_row_hook(method):
                return None
            return klass
    return None


def _get_concurrency_version(self: Any) -> Any:
    return getattr(self, self._concurrencymeta.field.attname)


def _prepare_subclass(sender: type[models.Model], **kwargs: Any) -> None:
    """Give proxies and multi-table children of versioned models their own options."""
    if sender._meta.abstract or "_concurrencymeta" in sender.__dict__:
        return
    inherited = getattr(sender, "_concurrencymeta", None)
    if inherited is not None:
        _manage(sender, inherited.field)


def _checked_m2m(owner: type[models.Model], through: Any) -> Any:
    """Return the checked many-to-many field of ``owner`` stored in ``through``, if any."""
    options = getattr(owner, "_concurrencymeta", None)
    if options is None or not isinstance(options.field, ConditionalVersionField):
        return None
    for m2m in owner._meta.many_to_many:
        if m2m.remote_field.through is through:
            return m2m if m2m.name in options.field.checked_fields(owner) else None
    return None


def _m2m_changed(
    sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any, using: str, **kwargs: Any
) -> None:
    """Bump the version of the rows whose checked many-to-many membership is about to change.

    Runs on the ``pre_*`` actions, inside the related manager's transaction:
    a refused bump (a stale instance) aborts the membership change.
    """
    if action not in ("pre_add", "pre_remove", "pre_clear"):
        return
    owner = model if reverse else type(instance)
    m2m = _checked_m2m(owner, sender)
    if m2m is None:
        return
    source, target = m2m.m2m_field_name(), m2m.m2m_reverse_field_name()
    links = sender._base_manager.using(using)
    if reverse:
        if action == "pre_add":
            pks = list(pk_set)
        else:
            rows = links.filter(**{target: instance.pk})
            if action == "pre_remove":
                rows = rows.filter(**{f"{source}__in": pk_set})
            pks = list(rows.values_list(source, flat=True))
        _bump(owner, using, pks)
        return
    if action == "pre_add":
        changed = bool(pk_set)
    else:
        rows = links.filter(**{source: instance.pk})
        if action == "pre_remove":
            rows = rows.filter(**{f"{target}__in": pk_set})
        changed = rows.exists()
    if not changed:
        return
    core.touch(instance, using)
    if m2m.remote_field.symmetrical and m2m.remote_field.model in (owner, "self") and pk_set:
        # Django writes the mirror rows without signals; their owners changed too.
        _bump(owner, using, [pk for pk in pk_set if pk != instance.pk])


def _bump(model: type[models.Model], using: str, pks: list[Any]) -> None:
    """Bump the versions of rows not in hand (their instances are not ours to check)."""
    if pks:
        attname = model._concurrencymeta.field.attname  # type: ignore[attr-defined]
        model._base_manager.using(using).filter(pk__in=pks).update(**{attname: F(attname) + 1})


m2m_changed.connect(_m2m_changed, dispatch_uid="concurrency.m2m_changed")

# Connected at import time, not in AppConfig.ready(): models that use these
# fields are prepared while their module imports this one, before ready().
class_prepared.connect(_prepare_subclass, dispatch_uid="concurrency.prepare_subclass")
