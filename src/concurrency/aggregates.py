"""Versioned aggregates: a change to a child row is a change to its root.

An order and its lines are one thing to edit. Declare the foreign key from the
child to the root in the child's ``ConcurrencyMeta``::

    class Order(models.Model):
        version = AutoIncVersionField()

    class OrderLine(models.Model):
        order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
        ...

        class ConcurrencyMeta:
            aggregate_root = "order"

Every ORM write that inserts, changes, moves or deletes a line then moves the
version of each order it touches (the old and the new one on a move, and each
level of nested roots), in the write's transaction and before it:

* checked against the root instance the writer holds (``line.order`` as forms,
  the admin's inline formsets and ``If-Match`` views set it, or the instance a
  related manager or ``update(order=…)`` is given); that instance is given the
  new version;
* once per root per transaction, without skipping a check: further child
  writes of a root this transaction already moved check the instance they hold
  against it and write nothing to the root.

The hook is the backend's INSERT/UPDATE/DELETE compiler (``watch_writes``),
so it covers save, queryset ``update()``/``delete()``, ``bulk_create()``,
``bulk_update()``, related managers, cascades and ``SET_NULL`` through any
manager. Raw SQL is not seen. The declaration is read when the ``concurrency``
app is ready; a bad one is system check ``concurrency.E017``, a root whose
version cannot move ``concurrency.E018``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.apps import apps
from django.core import checks
from django.db import connections, models, transaction
from django.db.models import F, Q
from django.db.models.expressions import Col
from django.db.models.signals import post_init, post_save, pre_delete, pre_save
from django.db.models.sql.query import Query

from .core.options import options, options_of
from .core.refusal import raise_conflict
from .core.roots import record_root_write, root_write
from .core.tracking import version_to_check
from .core.update import touch
from .core.usable import keep_transaction_usable
from .core.watch import watch_writes, writing
from .managers import VersionedQuerySet

__all__ = ["AggregateManager", "AggregateQuerySet", "bump_roots", "root_field"]

# child model (declaring it, and the one whose table holds the key) -> the foreign key to its root
_roots: dict[type[models.Model], models.ForeignKey] = {}
# The root a child instance was loaded with (its foreign key's value then).
_LOADED = "_concurrency_loaded_root"
# Set on a child instance during a raw (fixture) save.
_RAW = "_concurrency_raw_save"
_UNKNOWN = object()


def root_field(model: type[models.Model]) -> models.ForeignKey | None:
    """Return the foreign key from ``model`` to its aggregate root, if it declares one."""
    return _roots.get(model) or _roots.get(model._meta.concrete_model or model)


def _declared(model: type[models.Model]) -> str | None:
    meta = getattr(model, "ConcurrencyMeta", None)
    return getattr(meta, "aggregate_root", None)


def _check_declaration(model: type[models.Model]) -> list[checks.CheckMessage]:
    name = _declared(model)
    if name is None:
        return []
    hint = "Name a ForeignKey (or OneToOneField) of the model to a model with a version field."
    try:
        field = model._meta.get_field(name)
    except Exception:
        field = None
    if not isinstance(field, models.ForeignKey) or options_of(field.related_model) is None:
        return [
            checks.Error(
                f"ConcurrencyMeta.aggregate_root of {model._meta.label} is {name!r}, "
                "which is not a foreign key to a versioned model.",
                hint=hint,
                obj=model,
                id="concurrency.E017",
            )
        ]
    root: Any = field.related_model
    if not options(root).increment:
        return [
            checks.Error(
                f"ConcurrencyMeta.aggregate_root of {model._meta.label} names {root._meta.label}, "
                "whose ConcurrencyMeta.increment is False: writes of its children could not move its "
                "version, so nobody editing it would learn of them.",
                hint=f"Remove increment = False from {root._meta.label}, or the aggregate_root declaration.",
                obj=model,
                id="concurrency.E018",
            )
        ]
    return []


def check_aggregates(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """System check: every ``aggregate_root`` names a foreign key to a versioned model whose version moves."""
    configs = app_configs or apps.get_app_configs()
    return [
        error for config in configs for model in config.get_models() for error in _check_declaration(model)
    ]


def install() -> None:
    """Watch the writes of every child model that declares a root (from ``AppConfig.ready``)."""
    models_ = apps.get_models()
    for model in models_:
        declared = _declared(model)
        if declared is None or _check_declaration(model):
            continue
        field: Any = model._meta.get_field(declared)
        table = field.model._meta.concrete_model
        _roots[model] = _roots[table] = field
        root: Any = field.related_model
        options(root).is_root = True
        options(options(root).field.model).is_root = True
        watch_writes(table, _watch)
        for klass in models_:
            if issubclass(klass, table):
                keep_transaction_usable(klass)
                uid = f"concurrency.aggregate.{klass._meta.label}"
                post_init.connect(_loaded, sender=klass, dispatch_uid=uid)
                pre_save.connect(_saving, sender=klass, dispatch_uid=uid)
                pre_delete.connect(_child_deleted, sender=klass, dispatch_uid=uid)
            if issubclass(klass, root):
                post_save.connect(
                    _root_created,
                    sender=klass,
                    dispatch_uid=f"concurrency.aggregate_root.{klass._meta.label}",
                )


# -- what a child instance knows ---------------------------------------------------------


def _loaded(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    fk = root_field(sender)
    if fk is not None and fk.attname in instance.__dict__:
        instance.__dict__[_LOADED] = instance.__dict__[fk.attname]


def _saving(sender: Any, instance: models.Model, raw: bool = False, **kwargs: Any) -> None:
    instance.__dict__[_RAW] = raw


# -- the watcher of every write to a child table ------------------------------------------


def _watch(compiler: Any, kind: str, write: Callable[[], Any]) -> Any:
    """Move the roots of the rows this INSERT/UPDATE/DELETE writes, then run it, in one transaction."""
    query = compiler.query
    instance = writing.get()
    if instance is not None and not isinstance(instance, query.model):
        instance = None
    if instance is not None and instance.__dict__.get(_RAW):
        return write()  # fixtures are authoritative
    using = compiler.using
    if connections[using].in_atomic_block:
        return _write(compiler, kind, write, instance, using)
    with transaction.atomic(using=using, savepoint=False):
        return _write(compiler, kind, write, instance, using)


def _write(compiler: Any, kind: str, write: Callable[[], Any], instance: Any, using: str) -> Any:
    query = compiler.query
    fk = _roots[query.model._meta.concrete_model]
    if kind == "update" and all(_unchanged(field, value) for field, _model, value in query.values):
        return write()  # SET version = version: a lock (checked delete, verify), no change
    values: set[Any] = set()
    holders: list[models.Model] = []
    rows: list[Any] | None = None
    among: models.QuerySet | None = None  # child rows whose roots move too
    joined: set[Any] = set()  # the root an update(<fk>=…) moves rows to
    joiners: list[models.Model] = []
    if kind == "insert":
        for obj in query.objs:
            _root_of(obj, fk, values, holders)
    elif kind == "update":
        found, value = _set_value(query, fk)
        if instance is not None:
            loaded = instance.__dict__.get(_LOADED, _UNKNOWN)
            current = instance.__dict__.get(fk.attname, _UNKNOWN)
            # The row points where the instance was loaded from, and still does in memory.
            known = not instance._state.adding and current is not _UNKNOWN and loaded == current
            if found or known:
                # The root the row will point to (checked where the instance holds it).
                _root_of(instance, fk, values, holders)
            if not known:
                # A move, or a row this instance was not loaded from: the roots it has now.
                among = _rows(query, using)
        else:
            if found and hasattr(value, "resolve_expression"):
                # Known only once written: remember the rows, read their roots afterwards.
                rows = list(_rows(query, using).values_list("pk", flat=True))
            among = _rows(query, using)
            if found and not hasattr(value, "resolve_expression"):
                # The root the rows move to: moved once they are known to exist (below).
                _value_root(value, fk, joined, joiners)
    else:
        among = _rows(query, using)
    _move(fk, values, holders, using, among)
    result = write()
    if (joined or joiners) and result:
        _move(fk, joined, joiners, using)
    if rows:
        moved_to = query.model._base_manager.using(using).filter(pk__in=rows)
        _move(fk, set(moved_to.values_list(fk.attname, flat=True).distinct().order_by()), [], using)
    if instance is not None and kind != "delete" and fk.attname in instance.__dict__:
        instance.__dict__[_LOADED] = instance.__dict__[fk.attname]
    return result


def _root_of(obj: models.Model, fk: Any, values: set[Any], holders: list[models.Model]) -> None:
    """Add the root ``obj`` points to: the instance it holds, or the key's value."""
    value = obj.__dict__.get(fk.attname)  # never a query for a deferred key
    if value is None:
        return
    held = fk.get_cached_value(obj, default=None)
    if _holds(held, fk, value):
        holders.append(held)
    else:
        values.add(value)


def _value_root(value: Any, fk: Any, values: set[Any], holders: list[models.Model]) -> None:
    """Add the root an ``update(<fk>=value)`` moves rows to."""
    if value is None:
        return
    if isinstance(value, models.Model):
        key = getattr(value, fk.target_field.attname, None)
        if _holds(value, fk, key):
            holders.append(value)
        elif key is not None:
            values.add(key)
    else:
        values.add(value)


def _holds(held: Any, fk: Any, value: Any) -> bool:
    return (
        isinstance(held, fk.related_model)
        and not held._state.adding
        and held.pk is not None
        and value is not None
        and getattr(held, fk.target_field.attname) == value
    )


def _unchanged(field: Any, value: Any) -> bool:
    if isinstance(value, F):
        return vars(value).get("name") in (field.name, field.attname)
    return isinstance(value, Col) and value.target is field


def _set_value(query: Any, fk: Any) -> tuple[bool, Any]:
    """Return whether an UPDATE sets the foreign key, and to what."""
    for field, _model, value in query.values:
        if field.attname == fk.attname:
            return True, value
    return False, None


def _rows(query: Any, using: str) -> models.QuerySet:
    """The rows an UPDATE or DELETE is about to write, as a queryset."""
    select = query.chain(Query)
    select.clear_ordering(force=True)
    select.select_for_update = False
    return models.QuerySet(model=query.model, query=select, using=using)


# -- moving the roots ------------------------------------------------------------------------


def _move(fk: Any, values: set[Any], holders: list[models.Model], using: str, among: Any = None) -> None:
    """Move the version of each root: checked where the writer holds its instance.

    ``among``: child rows whose roots move too (read in the statement that locks them).
    """
    target = fk.target_field
    checked: set[Any] = set()
    seen: set[int] = set()
    for holder in holders:
        if id(holder) in seen:
            continue
        seen.add(id(holder))
        _move_held(holder, using)
        checked.add(target.to_python(getattr(holder, target.attname)))
    rest = {target.to_python(value) for value in values if value is not None} - checked
    if among is not None:
        keys = among.values(fk.attname)
        bump_roots(fk.related_model, rest, using, field=target, among=keys, besides=checked)
    elif rest:
        bump_roots(fk.related_model, rest, using, field=target)


def _move_held(holder: Any, using: str) -> None:
    """Move the root ``holder`` is an instance of, checked against the version it holds."""
    field = options(holder).field
    entry = root_write(field.model, holder.pk, using)
    if entry is None:
        before = getattr(holder, field.attname)
        token = writing.set(holder)
        try:
            touch(holder, using)
        finally:
            writing.reset(token)
        record_root_write(
            field.model, holder.pk, using, before, getattr(holder, field.attname), by_child=True
        )
        return
    # Moved already in this transaction: check the holder against it, write nothing.
    held, checked = version_to_check(holder, field, using)
    if checked and held != entry.new:
        raise_conflict(holder, held, using)


def _bump_expression(model: Any) -> tuple[Any, bool]:
    """Return the SQL that moves a root's version, and whether it is the old version plus one."""
    return options(model).field.bump_expression()


def bump_roots(
    root: type[models.Model],
    keys: Iterable[Any],
    using: str,
    field: Any = None,
    among: Any = None,
    besides: Iterable[Any] = (),
) -> int:
    """Move the version of the root rows whose ``field`` (default: the primary key) is in ``keys``.

    Unchecked, and skipping rows this transaction already moved. The rows are
    locked and read first (``SELECT … FOR UPDATE`` where the database has it),
    so the versions they are moved from are known to the rest of the
    transaction. ``among`` (a subquery of key values) adds rows, ``besides``
    leaves keys out. Return the number of rows moved.
    """
    target = field or root._meta.pk
    meta: Any = options(root)
    model = meta.field.model
    wanted = {key for key in keys if key is not None}
    if target.primary_key:
        # Rows this transaction moved already need no query at all.
        wanted = {key for key in wanted if root_write(model, key, using) is None}
    if not wanted and among is None:
        return 0
    where = Q(**{f"{target.attname}__in": wanted})
    if among is not None:
        where |= Q(**{f"{target.attname}__in": among})
    version = meta.field
    with transaction.atomic(using=using, savepoint=False):
        found = (
            root._base_manager.using(using)
            .filter(where)
            .exclude(**{f"{target.attname}__in": list(besides)})
            .select_for_update()
            .order_by("pk")
            .values_list("pk", version.attname)
        )
        fresh = [(pk, old) for pk, old in found if root_write(model, pk, using) is None]
        if not fresh:
            return 0
        pks = [pk for pk, _old in fresh]
        expression, plus_one = _bump_expression(model)
        rows = model._base_manager.using(using).filter(pk__in=pks)
        token = writing.set(None)
        try:
            count = rows.update(**{version.attname: expression})
        finally:
            writing.reset(token)
        stored = (
            {pk: old + 1 for pk, old in fresh} if plus_one else dict(rows.values_list("pk", version.attname))
        )
        for pk, old in fresh:
            record_root_write(model, pk, using, old, stored.get(pk), by_child=True)
    return int(count)


# -- deletions -----------------------------------------------------------------------------


def _child_deleted(
    sender: Any, instance: models.Model, using: str, origin: Any = None, **kwargs: Any
) -> None:
    """A child whose own ``delete()`` was called checks the root instance it holds."""
    if origin is not instance:
        return
    fk = root_field(sender)
    if fk is None:
        return
    holders: list[models.Model] = []
    _root_of(instance, fk, set(), holders)
    if holders:
        _move(fk, set(), holders, using)


def _root_created(sender: Any, instance: models.Model, created: bool, using: str, **kwargs: Any) -> None:
    """A root inserted in this transaction: nobody else can hold it, its children need not move it."""
    if created:
        field = options(instance).field
        version = instance.__dict__.get(field.attname)
        record_root_write(field.model, instance.pk, using, version, version, by_child=False)


# -- the public queryset ------------------------------------------------------------------


class AggregateQuerySet(VersionedQuerySet):
    """A ``VersionedQuerySet`` for child models.

    Every manager's writes move the roots (the hook is below the queryset);
    this one adds what ``VersionedQuerySet`` gives a child with a version of
    its own.
    """


class AggregateManager(models.Manager.from_queryset(AggregateQuerySet)):  # type: ignore[misc]
    """The manager of a child model (optional: any manager's writes move the roots)."""
