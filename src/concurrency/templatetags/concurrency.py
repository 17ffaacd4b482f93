"""Template filters for versioned objects: ``{% load concurrency %}``."""

from __future__ import annotations

from typing import Any

from django import template
from django.templatetags.l10n import unlocalize
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString

from ..core.options import options_of
from ..fields import VersionField
from ..forms import VersionField as VersionFormField

__all__ = ["identity", "is_version", "version"]

register = template.Library()


def _version_or_none(obj: Any) -> Any:
    meta = options_of(obj)
    if meta is None:
        return None
    return getattr(obj, meta.field.attname, None)


@register.filter
def identity(obj: Any) -> SafeString:
    """Return ``"<pk>,<version>"`` for a versioned object, the pk alone otherwise (escaped).

    Admin actions use it as the checkbox value, so a stale selection is noticed.
    """
    pk = getattr(obj, "pk", None)
    if pk is None:
        return SafeString("")
    current = _version_or_none(obj)
    if current is None:
        return conditional_escape(unlocalize(pk))
    return format_html("{},{}", unlocalize(pk), unlocalize(current))


@register.filter
def version(obj: Any) -> Any:
    """Return the version an object holds, or ``""`` if it is not versioned."""
    current = _version_or_none(obj)
    return "" if current is None else current


@register.filter
def is_version(field: Any) -> bool:
    """Return whether ``field`` is a version field: model field, form field, bound or admin field."""
    for _ in range(3):
        if isinstance(field, VersionField | VersionFormField):
            return True
        field = getattr(field, "field", None)
        if field is None:
            return False
    return False
