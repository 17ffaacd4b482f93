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


# Django 6.1 renamed transaction.savepoint() (the old name warns until 7.0).
if DJANGO_61:
    from django.db.transaction import savepoint_create
else:
    from django.db.transaction import savepoint as savepoint_create


__all__ = ["DJANGO_60", "DJANGO_61", "ObjectNotUpdated", "savepoint_create"]
