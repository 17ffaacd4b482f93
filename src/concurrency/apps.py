"""Application configuration."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConcurrencyConfig(AppConfig):
    """Registers the system checks and the creation of triggers after ``migrate``.

    The fields work without the app installed.
    """

    name = "concurrency"
    verbose_name = _("Optimistic concurrency")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import checks
        from .triggers import create_after_migrate

        checks.register()
        from . import aggregates

        aggregates.install()
        # Once per migrated app, on the database being migrated only.
        post_migrate.connect(create_after_migrate, dispatch_uid="concurrency.create_triggers")
