from __future__ import annotations

from django.apps import AppConfig


class InteropConfig(AppConfig):
    """Versioned models built with the libraries of docs/guide/interop.rst."""

    name = "tests.interop"
    label = "interop"
    default_auto_field = "django.db.models.BigAutoField"
