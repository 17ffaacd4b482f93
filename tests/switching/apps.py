from __future__ import annotations

from django.apps import AppConfig


class SwitchingConfig(AppConfig):
    """The project switching from django-concurrency."""

    name = "tests.switching"
    label = "switching"
    default_auto_field = "django.db.models.AutoField"
