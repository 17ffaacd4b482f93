"""``ConditionalVersionField``: a version bumped only when a checked field changes."""

from __future__ import annotations

import re
from typing import Any

from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import F
from django.db.models.expressions import Expression
from django.db.models.signals import m2m_changed

from ..core import rows
from ..core.options import declared_options, options, options_of
from ..core.update import touch
from .base import AutoIncVersionField

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

    def prepare_model(self, model: type[models.Model]) -> None:
        """Make the versioned ``model`` keep the row each instance is loaded with."""
        rows.keep_loaded_rows(model)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        model = self.model
        own = declared_options(model)
        if model._meta.abstract or own is None:
            return errors
        meta = own
        if meta.check_fields is not None and meta.ignore_fields is not None:
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
            for name in getattr(meta, attr) or ():
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
        meta = options(model)
        opts = model._meta
        if meta.check_fields is not None:
            names = {opts.get_field(name).name for name in meta.check_fields}
        else:
            ignored = {opts.get_field(name).name for name in meta.ignore_fields or ()}
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
        # (an unchecked one forgets it: tracking.loaded_version).
        row = rows.loaded_row(instance, old)
        if row is not None:
            compared = self._compared(type(instance))
            immutable = rows.IMMUTABLE_TYPES
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
        """Return the position in a loaded row (``rows.row_positions``) of each checked column, by attname."""
        try:
            return self._positions[model]
        except KeyError:
            checked = self.checked_fields(model)
            positions = rows.row_positions(model)
            concrete = [f for f in model._meta.concrete_fields if f.name in checked]
            self._positions[model] = {f.attname: positions[f.attname] for f in concrete}
            return self._positions[model]

    def bump_expression(self) -> tuple[Any, bool]:
        # Moved for a child's write, not for a change of its own checked fields.
        return F(self.attname) + 1, True

    def next_version_expression(self, values: list[tuple[Any, Any, Any]]) -> Any:
        checked = self.checked_fields(self.model)
        pairs = [(field, value) for field, _model, value in values if field.name in checked]
        return _BumpIfChanged(self, pairs) if pairs else None


def _checked_m2m(owner: type[models.Model], through: Any) -> Any:
    """Return the checked many-to-many field of ``owner`` stored in ``through``, if any."""
    own = options_of(owner)
    if own is None or not isinstance(own.field, ConditionalVersionField):
        return None
    for m2m in owner._meta.many_to_many:
        if m2m.remote_field.through is through:
            return m2m if m2m.name in own.field.checked_fields(owner) else None
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
    touch(instance, using)
    if m2m.remote_field.symmetrical and m2m.remote_field.model in (owner, "self") and pk_set:
        # Django writes the mirror rows without signals; their owners changed too.
        _bump(owner, using, [pk for pk in pk_set if pk != instance.pk])


def _bump(model: type[models.Model], using: str, pks: list[Any]) -> None:
    """Bump the versions of rows not in hand (their instances are not ours to check)."""
    if pks:
        attname = options(model).field.attname
        model._base_manager.using(using).filter(pk__in=pks).update(**{attname: F(attname) + 1})


m2m_changed.connect(_m2m_changed, dispatch_uid="concurrency.m2m_changed")
