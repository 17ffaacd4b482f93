"""A proxy of ``auth.Group``, declared before any ``AppConfig.ready()`` versions ``Group``."""

from __future__ import annotations

from django.contrib.auth.models import Group


class TeamGroup(Group):
    class Meta:
        proxy = True
        app_label = "proxyapp"


class Squad(TeamGroup):
    """A proxy of a proxy."""

    class Meta:
        proxy = True
        app_label = "proxyapp"
