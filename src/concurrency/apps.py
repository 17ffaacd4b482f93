"""Application configuration."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConcurrencyConfig(AppConfig):
    """Registers the system checks; the fields work without the app installed."""

    name = "concurrency"
    verbose_name = _("Optimistic concurrency")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks

        checks.register()
