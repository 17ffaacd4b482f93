"""Versioned aggregates: a change to a child row is a change to its root.

An order and its lines are one thing to edit. Declare the foreign key from the
child to the root in the child's ``ConcurrencyMeta``::

    class Order(models.Model):
        version = AutoIncVersionField()

    class OrderLine(models.Model):
        order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
        ...
        objects = AggregateManager()          # for queryset update()/bulk_update()

        class ConcurrencyMeta:
            aggregate_root = "order"

Creating, changing or deleting a line then bumps the order's version with the
compare-and-swap, before the line's own write and in its transaction:

* checked against the root version the writer started from when it has one:
  the order instance cached on the line (``line.order``, as forms, the admin's
  inline formsets and ``If-Match`` views set it); that instance is given the
  new version;
* once per root per transaction: further child writes of the same root in the
  same transaction, or a save of the root itself, do not bump it again (a
  rolled-back savepoint forgets its bumps);
* ``AggregateQuerySet.update()``/``bulk_update()`` and queryset ``delete()``
  bump each affected root once.

The child needs no version of its own. The declaration is read when the
``concurrency`` app is ready; a bad one is system check ``concurrency.E017``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core import checks
from django.db import connections, models
from django.db.models import F
from django.db.models.signals import post_save, pre_delete, pre_save

from . import core
from .managers import VersionedQuerySet

__all__ = ["AggregateManager", "AggregateQuerySet", "bump_roots", "root_field"]

# child model -> the foreign key to its root
_roots: dict[type[models.Model], models.ForeignKey] = {}
_BUMPED = "_concurrency_bumped_roots"


class _Bumped:
    """An ``on_commit`` marker: a root bumped in the current transaction.

    Django drops it from ``run_on_commit`` when the transaction or a savepoint
    around the bump rolls back, and replaces that list on every commit,
    rollback and savepoint rollback; so an unchanged list means a live bump.
    """

    __slots__ = ("queue",)

    def __init__(self, queue: list[Any]) -> None:
        self.queue = queue

    def __call__(self) -> None:
        pass

    def alive(self, connection: Any) -> bool:
        queue = connection.run_on_commit
        if queue is self.queue:
            return True
        if not any(entry[1] is self for entry in queue):
            return False
        self.queue = queue
        return True


def root_field(model: type[models.Model]) -> models.ForeignKey | None:
    """Return the foreign key from ``model`` to its aggregate root, if it declares one."""
    return _roots.get(model)


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
    if not isinstance(field, models.ForeignKey) or not hasattr(field.related_model, "_concurrencymeta"):
        return [
            checks.Error(
                f"ConcurrencyMeta.aggregate_root of {model._meta.label} is {name!r}, "
                "which is not a foreign key to a versioned model.",
                hint=hint,
                obj=model,
                id="concurrency.E017",
            )
        ]
    return []


def check_aggregates(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """System check: every ``aggregate_root`` names a foreign key to a versioned model."""
    configs = app_configs or apps.get_app_configs()
    return [
        error for config in configs for model in config.get_models() for error in _check_declaration(model)
    ]


def register() -> None:
    """Connect the receivers of every child model that declares a root (from ``AppConfig.ready``)."""
    checks.register(check_aggregates, checks.Tags.models)
    for model in apps.get_models():
        if _declared(model) is None or _check_declaration(model):
            continue
        field = model._meta.get_field(_declared(model))  # type: ignore[arg-type]
        _roots[model] = field  # type: ignore[assignment]
        uid = f"concurrency.aggregate.{model._meta.label}"
        pre_save.connect(_child_saved, sender=model, dispatch_uid=uid)
        pre_delete.connect(_child_deleted, sender=model, dispatch_uid=uid)
        root: Any = field.related_model
        post_save.connect(
            _root_saved, sender=root, dispatch_uid=f"concurrency.aggregate_root.{root._meta.label}"
        )


# -- once per root per transaction -------------------------------------------------


def _bumped(using: str) -> dict[tuple[Any, Any], _Bumped]:
    connection = connections[using]
    registry = connection.__dict__.get(_BUMPED)
    if registry is None:
        registry = connection.__dict__[_BUMPED] = {}
    return registry


def _already_bumped(using: str, key: tuple[Any, Any]) -> bool:
    connection = connections[using]
    if not connection.in_atomic_block:
        return False
    marker = _bumped(using).get(key)
    return marker is not None and marker.alive(connection)


def _remember(using: str, keys: list[tuple[Any, Any]]) -> None:
    connection = connections[using]
    if not connection.in_atomic_block:
        return
    registry = _bumped(using)
    for key in keys:
        marker = _Bumped(connection.run_on_commit)
        connection.on_commit(marker)
        registry[key] = marker
    if len(registry) > 1000:
        # Forget markers of finished transactions.
        for stale in [k for k, m in registry.items() if not m.alive(connection)]:
            del registry[stale]


def _key(model: type[models.Model], pk: Any) -> tuple[Any, Any]:
    concrete = model._concurrencymeta.field.model  # type: ignore[attr-defined]
    return concrete, concrete._meta.pk.to_python(pk)


def _bump_expression(root: type[models.Model]) -> Any:
    field = root._concurrencymeta.field  # type: ignore[attr-defined]
    from .fields import ConditionalVersionField

    if isinstance(field, ConditionalVersionField):
        return F(field.attname) + 1
    expression = field.next_version_expression([])
    return F(field.attname) + 1 if expression is None else expression


def bump_roots(root: type[models.Model], pks: Any, using: str) -> int:
    """Bump the version of the root rows ``pks``, unchecked, skipping those bumped in this transaction.

    One ``UPDATE … WHERE pk IN (…)``. Return the number of rows bumped.
    """
    keys = [_key(root, pk) for pk in {pk for pk in pks if pk is not None}]
    keys = [key for key in keys if not _already_bumped(using, key)]
    if not keys:
        return 0
    model = keys[0][0]
    field = model._concurrencymeta.field
    count = (
        model._base_manager.using(using)
        .filter(pk__in=[pk for _m, pk in keys])
        .update(**{field.attname: _bump_expression(model)})
    )
    _remember(using, keys)
    return int(count)


def _bump_one(child: models.Model, fk: models.ForeignKey, using: str) -> None:
    root_pk = getattr(child, fk.attname)
    if root_pk is None:
        return
    root_model = fk.related_model
    key = _key(root_model, root_pk)  # type: ignore[arg-type]
    if _already_bumped(using, key):
        return
    cached = fk.get_cached_value(child, default=None)
    if cached is not None and cached.pk == root_pk and not cached._state.adding:
        # The writer started from this version of the root: check it, and hand it the new one.
        core.touch(cached, using)
        _remember(using, [key])
    else:
        bump_roots(root_model, [root_pk], using)  # type: ignore[arg-type]


def _child_saved(
    sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any
) -> None:
    if raw:
        return
    fk = _roots.get(sender)
    if fk is not None:
        _bump_one(instance, fk, using)


def _child_deleted(
    sender: type[models.Model], instance: models.Model, using: str, origin: Any = None, **kwargs: Any
) -> None:
    fk = _roots.get(sender)
    if fk is None:
        return
    root_model = fk.related_model
    if isinstance(origin, root_model) and origin.pk == getattr(instance, fk.attname):
        return  # the root itself is being deleted
    if isinstance(origin, models.Model) and origin is instance:
        _bump_one(instance, fk, using)
    else:
        # A queryset delete or a cascade: one UPDATE for the roots not yet bumped.
        bump_roots(root_model, [getattr(instance, fk.attname)], using)  # type: ignore[arg-type]


def _root_saved(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """A root saved in a transaction: its children's writes need not bump it again."""
    from .fields import ConditionalVersionField

    field = instance._concurrencymeta.field  # type: ignore[attr-defined]
    if isinstance(field, ConditionalVersionField):
        return  # its version moves only when its own fields change
    _remember(using, [_key(sender, instance.pk)])


# -- queryset writes ---------------------------------------------------------------------


class AggregateQuerySet(VersionedQuerySet):
    """A ``VersionedQuerySet`` whose ``update()`` (and so ``bulk_update()``) bumps the roots it touches.

    ``delete()`` needs nothing more: each deleted child goes through ``pre_delete``.
    """

    def update(self, **kwargs: Any) -> int:
        fk = _roots.get(self.model)
        if fk is None:
            return super().update(**kwargs)
        using = self.db
        with _atomic(using):
            pks = set(self.order_by().values_list(fk.attname, flat=True).distinct())
            if fk.attname in kwargs or fk.name in kwargs:
                # Moving children: the root they move to changes too.
                target = kwargs.get(fk.attname, kwargs.get(fk.name))
                pks.add(getattr(target, "pk", target))
            bump_roots(fk.related_model, pks, using)  # type: ignore[arg-type]
            return super().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]


def _atomic(using: str) -> Any:
    from django.db import transaction

    return transaction.atomic(using=using, savepoint=False)


class AggregateManager(models.Manager.from_queryset(AggregateQuerySet)):  # type: ignore[misc]
    """The manager of a child model: queryset writes bump their roots."""
