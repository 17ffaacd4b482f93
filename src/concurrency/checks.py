"""System checks. Ids are stable; docs/ref/checks.rst lists them all."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import PREFIX, REMOVED, conf
from .fields import VersionField

__all__ = ["register"]


def _versioned_models(app_configs: Any) -> list[Any]:
    configs = app_configs or apps.get_app_configs()
    return [
        model
        for config in configs
        for model in config.get_models()
        if "_concurrencymeta" in model.__dict__ and not model._meta.proxy
    ]


def check_models(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report models whose versioning cannot work."""
    errors: list[checks.CheckMessage] = []
    for model in _versioned_models(app_configs):
        fields = [f for f in model._meta.concrete_fields if isinstance(f, VersionField)]
        if len(fields) > 1:
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
                    f"{model._meta.label} has a composite primary key, which versioned models do not support.",
                    hint="Use a single-column primary key, or remove the version field.",
                    obj=model,
                    id="concurrency.E002",
                )
            )
    return errors


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
    for name in ("CALLBACK",):
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
    return errors


def register() -> None:
    """Register the checks with Django's framework (called from AppConfig.ready)."""
    checks.register(check_models, checks.Tags.models)
    checks.register(check_settings)
