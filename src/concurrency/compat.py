"""Names that differ between the supported Django versions."""

from __future__ import annotations

import django

DJANGO_60 = django.VERSION >= (6, 0)
DJANGO_61 = django.VERSION >= (6, 1)

if DJANGO_60:
    from django.core.exceptions import ObjectNotUpdated
else:

    class ObjectNotUpdated(Exception):  # type: ignore[no-redef]  # noqa: N818 - Django's name
        """Stand-in for Django 6.0's ``ObjectNotUpdated`` on Django 5.2."""


__all__ = ["DJANGO_60", "DJANGO_61", "ObjectNotUpdated"]
