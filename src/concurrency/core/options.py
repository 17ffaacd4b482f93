"""Per-model options and the switches that turn checks and increments off.

The one place that reads a model's ``ConcurrencyOptions`` (the
``_concurrencymeta`` attribute the version field sets on its model): every
other module asks ``options()``/``options_of()`` or ``version_field()``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..conf import conf

if TYPE_CHECKING:
    from django.db.models import Field, Model

ATTRIBUTE = "_concurrencymeta"


class VersionFieldHooks(Protocol):
    """What the write path asks of a version field (``concurrency.fields.VersionField``)."""

    model: Any
    name: str
    attname: str
    column: str | None
    version_from_db: bool

    def to_python(self, value: Any) -> Any:
        """The value as Python holds it (Django's ``Field.to_python``)."""

    def next_version_expression(self, values: list[tuple[Any, Any, Any]]) -> Any:
        """Return what a queryset ``update()`` writing ``values`` sets the version to, as SQL."""

    def bump_expression(self) -> tuple[Any, bool]:
        """Return the SQL that moves the version whatever changed, and whether it adds one."""

    def update_version(self, instance: Any, old: Any, values: list[tuple[Any, Any, Any]], bump: bool) -> Any:
        """Return the version a save of ``values`` over ``old`` writes."""

    def stored_version(self, connection: Any, old: Any, new: Any) -> Any:
        """Return the version the database will store for ``new``, where it is predictable."""

    def returns_stored(self, connection: Any) -> bool:
        """Return whether the value an UPDATE computed is the value stored."""

    def get_col(self, alias: str, output_field: Field | None = None) -> Any:
        """The column expression (Django's ``Field.get_col``)."""

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        """The value as sent to the database (Django's ``Field.get_db_prep_value``)."""


class ConcurrencyOptions:
    """Per-model settings, read from an optional inner ``ConcurrencyMeta``."""

    #: The model is the aggregate root of another (set by ``aggregates.install``).
    is_root = False

    def __init__(self, model: type[Model], field: VersionFieldHooks) -> None:
        meta = getattr(model, "ConcurrencyMeta", None)
        self.model = model
        self.field = field
        self.enabled: bool = getattr(meta, "enabled", True)
        self.increment: bool = getattr(meta, "increment", True)
        self.check_fields: Sequence[str] | None = getattr(meta, "check_fields", None)
        self.ignore_fields: Sequence[str] | None = getattr(meta, "ignore_fields", None)


def options(obj: Any) -> ConcurrencyOptions:
    """Return the options of a versioned model or instance (``AttributeError`` if it is not one)."""
    return obj._concurrencymeta


def options_of(obj: Any) -> ConcurrencyOptions | None:
    """Return the options of ``obj``'s model, or None for anything that is not versioned."""
    return getattr(obj, ATTRIBUTE, None)


def declared_options(model: Any) -> ConcurrencyOptions | None:
    """Return the options ``model`` got as its own, not from a parent class (historical models too)."""
    return model.__dict__.get(ATTRIBUTE)


def set_options(model: Any, value: ConcurrencyOptions) -> None:
    """Make ``model`` versioned with ``value`` (the version field's ``contribute_to_class``)."""
    setattr(model, ATTRIBUTE, value)


def version_field(obj: Any) -> VersionFieldHooks:
    """Return the version field of a versioned model or instance."""
    return options(obj).field


def version_field_of(obj: Any) -> Any:
    """Return the version field of ``obj``'s model, or None for anything that is not versioned."""
    meta = options_of(obj)
    return None if meta is None else meta.field


def version_of(instance: Any) -> Any:
    """Return the version ``instance`` holds (``None`` for an unversioned one)."""
    opts = options_of(instance)
    return None if opts is None else getattr(instance, opts.field.attname)


# --- Switches -------------------------------------------------------------------------
# Targets (None = everything, a model class, or an instance) for which checks,
# or version increments, are switched off in the current thread / asyncio task.
checks_off: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "concurrencychecks_off", default=()
)
increments_off: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "concurrencyincrements_off", default=()
)


class Toggled(NamedTuple):
    """One use of a toggle: what it switches off, and the toggle object that did it."""

    target: Any
    owner: Any


def _matches(targets: tuple[Toggled, ...], instance: Any) -> bool:
    for target, _owner in targets:
        if target is None or target is instance:
            return True
        if isinstance(target, type) and isinstance(instance, target):
            return True
    return False


def is_checked(instance: Any) -> bool:
    """Return whether a write of ``instance`` is version-checked right now."""
    if not conf.ENABLED or not options(instance).enabled:
        return False
    disabled = checks_off.get()
    return not (disabled and _matches(disabled, instance))


def is_incremented(instance: Any) -> bool:
    """Return whether a write of ``instance`` bumps its version right now."""
    return options(instance).increment and not increment_switched_off(instance)


def increment_switched_off(instance: Any) -> bool:
    """Return whether ``concurrency_disable_increment`` covers ``instance`` right now."""
    frozen = increments_off.get()
    return bool(frozen) and _matches(frozen, instance)


def _model_matches(targets: tuple[Toggled, ...], model: type[Model]) -> bool:
    return any(t is None or (isinstance(t, type) and issubclass(model, t)) for t, _owner in targets)


def is_model_incremented(model: Any) -> bool:
    """Return whether writes to every row of ``model`` bump the version right now.

    The queryset counterpart of ``is_incremented``: instance-level switches
    cannot apply to a queryset ``update()``, model-level ones do.
    """
    if not options(model).increment:
        return False
    frozen = increments_off.get()
    return not (frozen and _model_matches(frozen, model))


def push(var: contextvars.ContextVar[tuple[Any, ...]], entry: Toggled) -> None:
    """Add ``entry`` to a toggle for the current context; see api.py."""
    var.set((*var.get(), entry))


def pop(var: contextvars.ContextVar[tuple[Any, ...]], owner: Any) -> None:
    """Remove the newest entry of ``owner`` from a toggle for the current context."""
    entries = var.get()
    for index in range(len(entries) - 1, -1, -1):
        if entries[index].owner is owner:
            var.set(entries[:index] + entries[index + 1 :])
            return
    raise RuntimeError(f"{owner!r} was finished in a thread or task where it was not started.")
