"""System checks: the one place that registers them. Ids are stable; docs/ref/checks.rst lists them.

Registered here: the settings (E004, E016, ...), the triggers (E101, E102), the
admin inlines (A003) and the aggregate roots (E017, E018). Checks that Django
runs through an object's own ``check()`` stay on that object: the version
fields (E001, E002, W010, E103, E104) and ``ConcurrentModelAdmin`` (A001, A002).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.db import connections
from django.utils.module_loading import import_string

from .aggregates import check_aggregates
from .conf import PREFIX, REMOVED, conf

__all__ = ["register"]


def check_triggers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report trigger factories that cannot be used."""
    from .triggers import factories, trigger_fields
    from .triggers.base import BaseTriggerFactory

    errors: list[checks.CheckMessage] = []
    if not isinstance(conf.TRIGGERS_FACTORY, dict):
        return [
            checks.Error(
                f"{PREFIX}TRIGGERS_FACTORY must be a dict of connection vendor to class path.",
                hint='For example {"postgresql": "myproject.triggers.TriggerFactory"}.',
                id="concurrency.E102",
            )
        ]
    for vendor, path in conf.TRIGGERS_FACTORY.items():
        try:
            cls = import_string(path) if isinstance(path, str) else path
        except (ImportError, TypeError, ValueError) as exc:
            problem = f"cannot be imported: {exc}"
        else:
            if isinstance(cls, type) and issubclass(cls, BaseTriggerFactory):
                continue
            problem = "is not a subclass of concurrency.triggers.BaseTriggerFactory"
        errors.append(
            checks.Error(
                f"{PREFIX}TRIGGERS_FACTORY[{vendor!r}] = {path!r} {problem}.",
                hint="Give the dotted path of a BaseTriggerFactory subclass.",
                id="concurrency.E102",
            )
        )
    vendors = factories()
    for alias in connections:
        vendor = connections[alias].vendor
        if vendor in vendors:
            continue
        for field in trigger_fields(alias, _models(app_configs)):
            errors.append(
                checks.Error(
                    f"{field.model._meta.label}.{field.name} needs a trigger, which {vendor!r} databases "
                    f"(database {alias!r}) do not support.",
                    hint=f"Use another version field, or plug a factory in with {PREFIX}TRIGGERS_FACTORY.",
                    obj=field,
                    id="concurrency.E101",
                )
            )
    return errors


def check_triggers_exist(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn about missing triggers in the databases being checked (needs the databases)."""
    from .triggers import factories, factory, get_trigger_name, trigger_fields

    warnings: list[checks.CheckMessage] = []
    for alias in databases or ():
        connection = connections[alias]
        fields = trigger_fields(alias, _models(app_configs))
        if not fields or connection.vendor not in factories():
            continue
        try:
            names = set(factory(connection).names())
        except ImportError:
            continue  # concurrency.E102
        with connection.cursor() as cursor:
            tables = set(connection.introspection.table_names(cursor))
        for field in fields:
            # A table not created yet is the migrations' business, not ours.
            if field.model._meta.db_table in tables and get_trigger_name(field) not in names:
                warnings.append(
                    checks.Warning(
                        f"The trigger {get_trigger_name(field)} of {field.model._meta.label}.{field.name} "
                        f"is missing from database {alias!r}: writes made outside Django do not bump the "
                        "version.",
                        hint="Run 'manage.py migrate' or 'manage.py triggers create'.",
                        obj=field,
                        id="concurrency.W001",
                    )
                )
    return warnings


def _models(app_configs: Any) -> list[Any] | None:
    if app_configs is None:
        return None
    return [model for config in app_configs for model in config.get_models()]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report removed settings and callables that cannot be imported."""
    errors: list[checks.CheckMessage] = []
    for name, advice in REMOVED.items():
        if hasattr(settings, PREFIX + name):
            errors.append(
                checks.Error(
                    f"The setting {PREFIX}{name} has been removed.",
                    hint=advice,
                    id="concurrency.E003",
                )
            )
    for name in ("CALLBACK", "HANDLER409", "FIELD_SIGNER"):
        value = getattr(conf, name)
        if callable(value):
            continue
        try:
            import_string(value)
        except (ImportError, TypeError, ValueError) as exc:
            errors.append(
                checks.Error(
                    f"{PREFIX}{name} = {value!r} cannot be imported: {exc}",
                    hint="Give a dotted path to an importable object, or the object itself.",
                    id="concurrency.E004",
                )
            )
    live = conf.LIVE_INTERVAL
    if isinstance(live, bool) or not isinstance(live, int | float) or not 0 <= live < 86400:
        errors.append(
            checks.Error(
                f"{PREFIX}LIVE_INTERVAL = {live!r} is not a number of seconds.",
                hint="Give the seconds between checks as a number from 0 (off) to 86399; the default is 30.",
                id="concurrency.E016",
            )
        )
    return errors


def check_admin_inlines(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about admin inlines of versioned models that leave the version out (concurrency.A003)."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.admin"):
        return []
    from django.contrib.admin.sites import all_sites

    from .admin.checks import check_inlines

    warnings: list[checks.CheckMessage] = []
    for site in all_sites:
        for model_admin in site._registry.values():
            warnings.extend(check_inlines(model_admin))
    return warnings


def register() -> None:
    """Register the checks with Django's framework (called from AppConfig.ready)."""
    checks.register(check_settings)
    checks.register(check_triggers, checks.Tags.models)
    checks.register(check_triggers_exist, checks.Tags.database)
    checks.register(check_admin_inlines, checks.Tags.admin)
    checks.register(check_aggregates, checks.Tags.models)
