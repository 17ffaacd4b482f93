"""Database triggers for ``TriggerVersionField``: find, create, drop and list them.

The migration operations (``concurrency.operations``), the automatic creation
after ``migrate`` and the ``triggers`` management command all use this API.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.apps import apps as global_apps
from django.db import connections, router
from django.db.utils import NotSupportedError
from django.utils.module_loading import import_string

from ..conf import conf
from ..core.options import declared_options
from .base import PREFIX, BaseTriggerFactory, TriggeredField, get_trigger_name

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "DEFAULT_FACTORIES",
    "PREFIX",
    "BaseTriggerFactory",
    "create_after_migrate",
    "create_triggers",
    "drop_triggers",
    "factories",
    "factory",
    "get_trigger_name",
    "get_triggers",
    "is_default_factory",
    "trigger_fields",
]

#: ``connection.vendor`` → dotted path of the factory class.
#: ``CONCURRENCY_TRIGGERS_FACTORY`` is merged over it.
DEFAULT_FACTORIES: dict[str, str] = {
    "postgresql": "concurrency.triggers.postgresql.TriggerFactory",
    "mysql": "concurrency.triggers.mysql.TriggerFactory",
    "sqlite": "concurrency.triggers.sqlite.TriggerFactory",
}


def factories() -> dict[str, Any]:
    """Return the vendor → factory (class or dotted path) mapping in use."""
    return {**DEFAULT_FACTORIES, **conf.TRIGGERS_FACTORY}


def factory(connection: BaseDatabaseWrapper) -> BaseTriggerFactory:
    """Return the trigger factory for ``connection``.

    Raise ``NotSupportedError`` for a vendor without one (the system check
    concurrency.E101 reports it first).
    """
    path = factories().get(connection.vendor)
    if path is None:
        raise NotSupportedError(
            f"TriggerVersionField does not support {connection.vendor!r} databases "
            f"(database {connection.alias!r}); set CONCURRENCY_TRIGGERS_FACTORY."
        )
    cls = import_string(path) if isinstance(path, str) else path
    return cls(connection)


def is_default_factory(connection: BaseDatabaseWrapper) -> bool:
    """Return whether ``connection`` has this library's own triggers.

    They keep a version that the UPDATE raised, which lets a save know the
    version it stored without reading it back. A factory set in
    ``CONCURRENCY_TRIGGERS_FACTORY`` may write anything, so its saves read back.
    """
    default = DEFAULT_FACTORIES.get(connection.vendor)
    setting = conf.TRIGGERS_FACTORY
    if not isinstance(setting, dict):
        return False  # concurrency.E102 reports it.
    custom = setting.get(connection.vendor, default)
    if isinstance(custom, type):
        custom = f"{custom.__module__}.{custom.__qualname__}"
    return default is not None and custom == default


def trigger_fields(using: str | None = None, models: Iterable[Any] | None = None) -> list[TriggeredField]:
    """Return the ``TriggerVersionField`` of every model that needs a trigger.

    Only concrete models with a single-column primary key, and with ``using``
    only those the routers let migrate on that database.
    """
    found: list[TriggeredField] = []
    for model in global_apps.get_models() if models is None else models:
        meta = declared_options(model)
        if meta is None or model._meta.proxy or getattr(model._meta, "is_composite_pk", False):
            continue
        field: Any = meta.field
        if not getattr(field, "needs_trigger", False) or field.model is not model or field in found:
            continue
        if using is None or router.allow_migrate_model(using, model):
            found.append(field)
    return found


def _aliases(databases: Iterable[str] | str | None) -> list[str]:
    if isinstance(databases, str):
        return [databases]
    return list(connections) if databases is None else list(databases)


def get_triggers(databases: Iterable[str] | str | None = None) -> dict[str, list[str]]:
    """Return the names of this library's triggers in each database."""
    return {alias: factory(connections[alias]).names() for alias in _aliases(databases)}


def create_triggers(
    databases: Iterable[str] | str | None = None, *, replace: bool = False
) -> dict[str, list[tuple[TriggeredField, bool]]]:
    """Create the missing triggers; return ``(field, created)`` pairs per database."""
    done: dict[str, list[tuple[TriggeredField, bool]]] = {}
    for alias in _aliases(databases):
        fields = trigger_fields(alias)
        if not fields:
            continue
        maker = factory(connections[alias])
        existing = set(maker.names())
        done[alias] = []
        for field in fields:
            created = replace or get_trigger_name(field) not in existing
            if created:
                maker.create(field, replace=True)
            done[alias].append((field, created))
    return done


def drop_triggers(
    databases: Iterable[str] | str | None = None,
) -> dict[str, list[tuple[TriggeredField, bool]]]:
    """Drop the triggers (and PostgreSQL's functions); return ``(field, existed)`` pairs per database."""
    done: dict[str, list[tuple[TriggeredField, bool]]] = {}
    for alias in _aliases(databases):
        fields = trigger_fields(alias)
        if not fields:
            continue
        maker = factory(connections[alias])
        existing = set(maker.names())
        done[alias] = []
        for field in fields:
            maker._run(maker.drop_sql(field))
            done[alias].append((field, get_trigger_name(field) in existing))
    return done


def create_after_migrate(
    app_config: Any, using: str, apps: Any = None, verbosity: int = 1, **kwargs: Any
) -> None:
    """Create the missing triggers of ``app_config``'s models on ``using`` (a ``post_migrate`` receiver).

    The models come from the migrated state, so a table or column that the
    migrations have not created yet is skipped.
    """
    if not conf.AUTO_CREATE_TRIGGERS:
        return
    state_apps = apps or global_apps
    fields: list[Any] = []
    for field in trigger_fields(using, app_config.get_models()):
        try:
            historical = declared_options(state_apps.get_model(field.model._meta.label))
        except LookupError:
            continue
        if historical is not None and historical.field.name == field.name:
            fields.append(historical.field)
    if not fields:
        return
    connection = connections[using]
    try:
        maker = factory(connection)
    except NotSupportedError:
        return  # concurrency.E101 says so.
    existing = set(maker.names())
    for field in fields:
        if get_trigger_name(field) not in existing:
            maker.create(field, replace=True)
            if verbosity >= 2:
                print(f"  Created trigger {get_trigger_name(field)} on {using!r}")
