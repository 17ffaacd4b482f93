"""``{% live_notice form %}``: the "changed since you opened it" notice in your own templates.

``{% load concurrency_live %}``, then put ``{% live_notice form %}`` where the
notice should appear (usually just before the ``<form>``). It renders one
``<script src=… defer>`` tag with ``data-`` attributes, or nothing: for a form
of a new row, for a user without the model's view or change permission, or
when ``CONCURRENCY_LIVE_INTERVAL`` is 0. Needs ``django.template.context_processors.request``,
``django.contrib.staticfiles`` and ``path("concurrency/", include("concurrency.urls"))``.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.forms.widgets import Script
from django.urls import NoReverseMatch, reverse
from django.utils.safestring import SafeString, mark_safe

from ..core.options import options_of
from ..live import SCRIPT, held_version, live_notice_attributes, may_view

__all__ = ["live_notice"]

register = template.Library()


@register.simple_tag(takes_context=True)
def live_notice(context: template.Context, form: Any, current_url: str | None = None) -> SafeString:
    """Render the script watching the row ``form`` edits, or nothing.

    ``current_url`` is where "Open the current version in a new tab" leads;
    by default the instance's ``get_absolute_url()`` if it has one, else the
    page itself.
    """
    request = context.get("request")
    instance = getattr(form, "instance", None)
    if request is None:
        raise ImproperlyConfigured(
            "{% live_notice %} needs the request in the template context: add "
            "'django.template.context_processors.request' to your template context processors."
        )
    if instance is None or options_of(instance) is None or instance.pk is None:
        return mark_safe("")
    user = getattr(request, "user", None)
    if instance._state.adding or user is None or not may_view(user, type(instance)):
        return mark_safe("")
    opts = instance._meta.concrete_model._meta
    try:
        endpoint = reverse("concurrency:version", kwargs={"label": opts.label_lower, "pk": instance.pk})
    except NoReverseMatch:
        raise ImproperlyConfigured(
            '{% live_notice %} needs path("concurrency/", include("concurrency.urls")) in your URLconf.'
        ) from None
    if current_url is None:
        current_url = instance.get_absolute_url() if hasattr(instance, "get_absolute_url") else request.path
    attributes = live_notice_attributes(
        request, instance, held_version(form, instance), endpoint, current_url=current_url
    )
    if attributes is None:
        return mark_safe("")
    return SafeString(str(Script(SCRIPT, **attributes)))
