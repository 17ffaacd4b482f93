"""System checks of admins of versioned models (``concurrency.A001``-``A003``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.core import checks
from django.http import HttpRequest

from ..core.options import version_field_of

if TYPE_CHECKING:
    pass


def check_inlines(model_admin: admin.ModelAdmin) -> list[checks.CheckMessage]:
    """Warn about inlines of versioned models that leave the version out of their form.

    Such an inline's rows are saved without a version check (concurrency.A003).
    """
    problems: list[checks.CheckMessage] = []
    for inline in model_admin.inlines:
        field = version_field_of(inline.model)
        if field is None:
            continue
        name = field.name
        where = None
        if name in (inline.exclude or ()) or name in (inline.readonly_fields or ()):
            where = "exclude' or 'readonly_fields"
        elif inline.fieldsets and name not in flatten_fieldsets(inline.fieldsets):
            where = "fieldsets"
        elif inline.fields and name not in flatten_fieldsets([(None, {"fields": inline.fields})]):
            where = "fields"
        if where is None:
            continue
        label = f"{inline.__module__}.{inline.__qualname__}"
        problems.append(
            checks.Warning(
                f"{label}, an inline of {inline.model._meta.label} in "
                f"{type(model_admin).__module__}.{type(model_admin).__qualname__}, leaves the version field "
                f"{name!r} out of its '{where}', so the rows it saves are not version-checked.",
                hint=f"Add {name!r} to the inline's 'fields' or 'fieldsets' (it renders as a hidden input).",
                obj=inline,
                id="concurrency.A003",
            )
        )
    return problems


def check_request() -> HttpRequest:
    from django.contrib.auth.models import AnonymousUser

    request = HttpRequest()
    request.user = AnonymousUser()
    return request
