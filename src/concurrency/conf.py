"""Lazily read ``CONCURRENCY_*`` settings.

Values are looked up in ``django.conf.settings`` on first use and cached until a
``setting_changed`` signal names one of them, so ``override_settings`` always
works and nothing is ever written back into the project's settings.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = [
    "LIST_EDITABLE_POLICY_ABORT_ALL",
    "LIST_EDITABLE_POLICY_SILENT",
    "conf",
]

LIST_EDITABLE_POLICY_SILENT = 1
LIST_EDITABLE_POLICY_ABORT_ALL = 2
# Names kept for code written against the reference implementation.
CONCURRENCY_LIST_EDITABLE_POLICY_SILENT = LIST_EDITABLE_POLICY_SILENT
CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL = LIST_EDITABLE_POLICY_ABORT_ALL

PREFIX = "CONCURRENCY_"

DEFAULTS: dict[str, Any] = {
    "ENABLED": True,
    "AUTO_CREATE_TRIGGERS": True,
    "FIELD_SIGNER": "concurrency.forms.VersionFieldSigner",
    "POLICY": LIST_EDITABLE_POLICY_SILENT,
    "CALLBACK": "concurrency.views.callback",
    "HANDLER409": "concurrency.views.conflict",
    "VERSION_FIELD_REQUIRED": True,
    "TRIGGERS_FACTORY": {},
    # concurrency.http / concurrency.rest_framework: a write without If-Match is 428.
    "REQUIRE_IF_MATCH": True,
    # concurrency.live: seconds between "changed since you opened it" checks; 0 = off.
    "LIVE_INTERVAL": 30,
}

# Settings that older releases understood and that now only produce a system
# check error (see concurrency.checks), mapped to the advice given.
REMOVED = {
    "IGNORE_DEFAULT": "Use CONCURRENCY_VERSION_FIELD_REQUIRED instead.",
    "MANUAL_TRIGGERS": (
        "Triggers are managed with migration operations and the 'triggers' command; remove the setting."
    ),
}


class Settings:
    """Attribute access to the ``CONCURRENCY_*`` settings with defaults."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown concurrency setting {name!r}")
        value = getattr(settings, PREFIX + name, DEFAULTS[name])
        self._cache[name] = value
        # Later reads hit the instance dict and skip __getattr__ entirely.
        self.__dict__[name] = value
        return value

    def reload(self, name: str | None = None) -> None:
        """Forget cached values (all of them, or one)."""
        names = list(self._cache) if name is None else [name]
        for key in names:
            self._cache.pop(key, None)
            self.__dict__.pop(key, None)


conf = Settings()


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX):
        conf.reload(setting[len(PREFIX) :])
