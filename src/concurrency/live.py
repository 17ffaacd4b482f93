"""Tell a user who is still editing that someone else changed the record.

The page carries the entity tag of the version its form holds. A small static
script (``concurrency/live.js``: no inline script, so a strict
Content-Security-Policy allows it) asks, when the page regains focus and every
``CONCURRENCY_LIVE_INTERVAL`` seconds while it is visible::

    GET <endpoint>?since=<when the page was rendered>
    If-None-Match: "<version>-<mac>"

and the endpoint answers ``304 Not Modified`` after one query by primary key
(``SELECT pk, version … WHERE pk = …``), rendering nothing. When the version
moved on it answers 200 with a short JSON document (who changed it and when,
from the admin log), and the script shows it in the admin's message style.
A deleted row is a 404 with the same document.

Two adapters use it: every ``ConcurrentModelAdmin`` change form (the endpoint
is ``<object_id>/version/`` in the admin), and ``{% live_notice form %}``
(``{% load concurrency_live %}``) for a ``ConcurrentForm`` in your own
templates, whose endpoint is ``concurrency.urls``. Both answer only to users
who may view the row, and show nothing to anyone else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.apps import apps
from django.contrib.auth import get_permission_codename
from django.core.exceptions import ValidationError
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.urls import path
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ._bases import ModelAdminBase
from .conf import conf
from .core.options import options, options_of
from .http import make_etag, version_from_etag

__all__ = [
    "LiveNoticeMixin",
    "held_version",
    "interval",
    "live_notice_attributes",
    "may_view",
    "version_response",
    "version_view",
]

SCRIPT = "concurrency/live.js"


def interval() -> float:
    """Return ``CONCURRENCY_LIVE_INTERVAL`` in seconds; 0 switches the notice off."""
    value = conf.LIVE_INTERVAL
    # A bad value is system check concurrency.E016; until it is fixed, the notice is off.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 86400:
        return 0.0
    return float(value)


def _etag(model: type[models.Model], pk: Any, version: Any) -> str:
    probe = model(pk=pk)
    setattr(probe, options(model).field.attname, version)
    return make_etag(probe)


def held_version(form: forms.BaseForm | None, instance: models.Model) -> Any:
    """Return the version ``form`` holds for ``instance``: what it was rendered with, or posted."""
    attname = options(instance).field.attname
    name = options(instance).field.name
    if form is not None and name in form.fields:
        value = form[name].value()
        # A posted value that did not verify has no version: there is nothing to watch.
        return getattr(value, "version", None)
    return getattr(instance, attname)


def live_notice_attributes(
    request: HttpRequest,
    instance: models.Model,
    version: Any,
    endpoint: str,
    *,
    current_url: str | None = None,
    resolve_form: str | None = None,
) -> dict[str, Any] | None:
    """Return the ``data-`` attributes of the script tag watching ``instance``, or ``None``.

    ``None`` when the notice is switched off or there is no version to
    watch. ``resolve_form`` is the id of a form whose stale submission
    shows a resolution page (the admin's ``ConflictResolutionMixin``).
    """
    every = interval()
    if every <= 0 or version is None:
        return None
    attributes: dict[str, Any] = {
        "id": "concurrency-live",
        "defer": True,
        "data-endpoint": endpoint,
        "data-etag": _etag(type(instance), instance.pk, version),
        "data-since": timezone.now().isoformat(),
        "data-interval": str(int(every * 1000)),
        "data-label": gettext("Changed since you opened this page"),
    }
    if current_url:
        attributes["data-current-url"] = current_url
        attributes["data-open-label"] = gettext("Open the current version in a new tab")
    if resolve_form:
        attributes["data-resolve-form"] = resolve_form
        attributes["data-resolve-label"] = gettext("Compare with your changes")
    return attributes


def _since(request: HttpRequest) -> datetime | None:
    """Return the ``since`` of the request (``None`` when absent, empty or naive).

    Raise ``ValueError`` for a value that is not a date and time representable
    in UTC (month 13, February 30, an offset of 25 hours, year 1 at +05:00),
    so that no database is ever asked about it.
    """
    raw = request.GET.get("since", "")
    if not raw:
        return None
    if len(raw) > 64 or not raw.isascii() or not raw.isprintable():
        raise ValueError(raw)
    since = parse_datetime(raw)  # ValueError for a well-formed impossible value
    if since is None:
        raise ValueError(raw)
    if timezone.is_naive(since):
        return None
    # OverflowError: the instant falls outside the years 1 to 9999 in UTC.
    try:
        return since.astimezone(UTC)
    except OverflowError:
        raise ValueError(raw) from None


def _who(instance: models.Model, since: datetime | None, deleted: bool) -> str:
    entries = []
    if since is not None and apps.is_installed("django.contrib.admin"):
        from .resolution import changed_by

        entries = changed_by(instance, since)
        if deleted:
            entries = [entry for entry in entries if entry.is_deletion()]
    if entries:
        entry = entries[0]
        when = formats.date_format(timezone.localtime(entry.action_time), "DATETIME_FORMAT")
        if deleted:
            return gettext("Deleted by %(user)s at %(when)s since you opened this page.") % {
                "user": entry.user,
                "when": when,
            }
        return gettext("Changed by %(user)s at %(when)s since you opened this page.") % {
            "user": entry.user,
            "when": when,
        }
    if deleted:
        return gettext("Someone deleted this record since you opened this page.")
    return gettext("Someone else changed this record since you opened this page.")


def version_response(
    request: HttpRequest,
    queryset: models.QuerySet,
    pk: Any,
    *,
    can_view: Callable[[models.Model | None], bool],
) -> HttpResponse:
    """Answer a conditional GET for the version of row ``pk`` of ``queryset``.

    ``304`` when ``If-None-Match`` names the row's current version (one
    query, nothing rendered); otherwise 200 (404 for a row that is gone)
    with ``{"version", "etag", "deleted", "message"}``. ``can_view``
    is asked about the row (``None`` when it is gone); a ``False`` is 403.
    A ``since`` that is not a date and time is 400.

    A row outside ``queryset`` is answered as a primary key that never
    existed. The 404 names who deleted the row, from the admin log, only to
    a request whose ``If-None-Match`` is a tag issued for that row: a page
    that showed it. A row that is merely hidden has no deletion in the log.
    """
    try:
        since = _since(request)
    except ValueError:
        return JsonResponse(
            {"detail": gettext("“since” is not a date and time with a UTC offset.")}, status=400
        )
    model = queryset.model
    field = options(model).field
    try:
        key = model._meta.pk.to_python(pk)
    except ValidationError:
        raise Http404 from None
    rows = list(queryset.filter(pk=key).only(model._meta.pk.attname, field.attname)[:1])
    obj = rows[0] if rows else None
    if not can_view(obj):
        return JsonResponse({"detail": gettext("You may not view this record.")}, status=403)
    held = request.headers.get("If-None-Match", "").strip()
    if obj is None:
        gone = model(pk=key)
        shown = held and version_from_etag(model, key, held) is not None
        return JsonResponse(
            {
                "version": None,
                "etag": None,
                "deleted": True,
                "message": _who(gone, since if shown else None, deleted=True),
            },
            status=404,
        )
    version = getattr(obj, field.attname)
    etag = make_etag(obj)
    if held and version_from_etag(model, obj.pk, held) == version:
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = JsonResponse(
            {
                "version": version,
                "etag": etag,
                "deleted": False,
                "message": _who(obj, since, deleted=False),
            }
        )
    response["ETag"] = etag
    return response


# -- the admin adapter ------------------------------------------------------------


class LiveNoticeMixin(ModelAdminBase):
    """Give a ``ModelAdmin`` of a versioned model the "changed since you opened it" notice.

    ``ConcurrentModelAdmin`` includes it. The change form of a user who may
    view the object carries the script; its endpoint is
    ``<object_id>/version/`` (URL name ``<app>_<model>_version``). Set
    ``live_notice = False`` to leave it out of one admin.
    """

    live_notice = True

    def get_urls(self) -> list[Any]:
        opts = self.model._meta
        view = self.admin_site.admin_view(self.live_version_view)
        urls = [path("<path:object_id>/version/", view, name=f"{opts.app_label}_{opts.model_name}_version")]
        return [*urls, *super().get_urls()]

    @method_decorator(never_cache)
    @method_decorator(require_safe)
    def live_version_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Answer the conditional GET of the change form's script (see ``version_response``)."""
        from django.contrib.admin.utils import unquote

        model = self.model
        if options_of(model) is None:
            raise Http404
        if not self.has_view_or_change_permission(request):
            return JsonResponse({"detail": gettext("You may not view this record.")}, status=403)
        return version_response(
            request,
            self.get_queryset(request),
            unquote(object_id),
            can_view=lambda obj: bool(self.has_view_or_change_permission(request, obj)),
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if (
            change
            and self.live_notice
            and obj is not None
            and obj.pk is not None
            and options_of(obj) is not None
            and self.has_view_or_change_permission(request, obj)
        ):
            from django.contrib.admin.utils import quote
            from django.forms.widgets import Script
            from django.urls import reverse

            from .resolution import ConflictResolutionMixin

            opts = obj._meta
            name = f"admin:{opts.app_label}_{opts.model_name}"
            site = self.admin_site.name
            adminform = context.get("adminform")
            attributes = live_notice_attributes(
                request,
                obj,
                held_version(getattr(adminform, "form", None), obj),
                reverse(f"{name}_version", args=[quote(obj.pk)], current_app=site),
                current_url=reverse(f"{name}_change", args=[quote(obj.pk)], current_app=site),
                resolve_form=(
                    f"{opts.model_name}_form"
                    if isinstance(self, ConflictResolutionMixin) and self.has_change_permission(request, obj)
                    else None
                ),
            )
            if attributes is not None:
                context["media"] = context["media"] + forms.Media(js=[Script(SCRIPT, **attributes)])  # type: ignore[list-item]
        return super().render_change_form(request, context, add, change, form_url, obj)


# -- the endpoint for ConcurrentForm pages (concurrency.urls) ---------------------


def may_view(user: Any, model: type[models.Model]) -> bool:
    """Return whether ``user`` has the view or change permission of ``model``."""
    opts = model._meta
    return any(
        user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in ("view", "change")
    )


@never_cache
@require_safe
def version_view(request: HttpRequest, label: str, pk: str) -> HttpResponse:
    """Answer the script of ``{% live_notice %}`` for the row ``pk`` of model ``label`` ("app.model").

    Only users with the model's view or change permission get an answer
    (others 403); the row is looked up through the default manager.
    """
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        raise Http404 from None
    if options_of(model) is None:
        raise Http404
    user = getattr(request, "user", None)
    if user is None or not may_view(user, model):
        return JsonResponse({"detail": gettext("You may not view this record.")}, status=403)
    return version_response(request, model._default_manager.all(), pk, can_view=lambda obj: True)
