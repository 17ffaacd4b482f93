"""System checks of the settings. Ids are stable; docs/ref/checks.rst lists them all.

Model checks (concurrency.E001, E002) live on the fields, where Django runs them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import PREFIX, REMOVED, conf

__all__ = ["register"]


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
    return errors


def register() -> None:
    """Register the checks with Django's framework (called from AppConfig.ready)."""
    checks.register(check_settings)
