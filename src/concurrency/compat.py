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


def is_history_copy(model: type) -> bool:
    """Return whether ``model`` is a historical model of django-simple-history being built."""
    return isinstance(model.__dict__.get("instance_type"), type) and any(
        f"{klass.__module__}.{klass.__qualname__}" == "simple_history.models.HistoricalChanges"
        for klass in model.__mro__
    )


__all__ = ["DJANGO_60", "DJANGO_61", "ObjectNotUpdated", "is_history_copy", "savepoint_create"]
