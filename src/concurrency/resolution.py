"""Resolve a refused admin change field by field: what you started from, what you entered, what is there now.

When a change form is submitted against a version that is no longer current,
``ConflictResolutionMixin`` shows a three-way comparison instead of a bare
error. Fields only one side changed are merged automatically; for fields both
sides changed the user picks "keep mine" or "take theirs", then saves against
the version they were just shown (a plain compare-and-swap: if the row moves
again, the page comes back with the newer values)::

    class ArticleAdmin(ConflictResolutionMixin, ConcurrentModelAdmin):
        ...

The value the user started from (the *base*) travels with the form as a
signed snapshot in a hidden field, together with the version and the time the
form was shown; who changed the row since is read from the admin log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.db import models
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from .exceptions import RecordModifiedError

__all__ = [
    "BASE_FIELD",
    "ConflictResolutionMixin",
    "FieldMerge",
    "Merge",
    "changed_by",
    "three_way",
]

BASE_FIELD = "_concurrency_base"
RESOLVE_FIELD = "_concurrency_resolve"
CHOICE_PREFIX = "_concurrency_choice-"
MINE_PREFIX = "_concurrency_mine-"
THEIRS_PREFIX = "_concurrency_theirs-"

#: Statuses of a field in a three-way comparison.
UNCHANGED, MINE, THEIRS, SAME, CONFLICT = "unchanged", "mine", "theirs", "same", "conflict"

Items = list[tuple[str, str]]


# -- The snapshot of what the form showed -------------------------------------


def _salt(model: Any, pk: Any) -> str:
    return f"concurrency.resolution:{model._meta.label_lower}:{pk}"


def _keys(bound: forms.BoundField) -> list[str]:
    """Return the POST keys a field's widget reads."""
    widget = bound.field.widget
    if isinstance(widget, forms.MultiWidget):
        return [bound.html_name + suffix for suffix in widget.widgets_names]  # type: ignore[attr-defined]
    return [bound.html_name]


def _items(bound: forms.BoundField, value: Any) -> Items:
    """Return ``value`` as the POST items the field's widget would submit."""
    widget = bound.field.widget
    if isinstance(widget, forms.CheckboxInput):
        return [(bound.html_name, "on")] if widget.check_test(value) else []
    if isinstance(widget, forms.widgets.ChoiceWidget):
        return [(bound.html_name, v) for v in widget.format_value(value)]
    if isinstance(widget, forms.MultiWidget):
        parts: Any = value if isinstance(value, list | tuple) else widget.decompress(value)
        names: list[str] = widget.widgets_names  # type: ignore[attr-defined]
        return [
            (bound.html_name + suffix, _text(sub.format_value(part)))
            for suffix, sub, part in zip(names, widget.widgets, parts or [], strict=False)
        ]
    if isinstance(value, list | tuple):
        return [(bound.html_name, _text(v)) for v in value]
    return [(bound.html_name, _text(widget.format_value(value)))]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _merged_fields(form: forms.BaseForm) -> list[forms.BoundField]:
    """Return the fields a three-way merge covers: visible, editable, not files."""
    version = getattr(form._meta.model, "_concurrencymeta", None)  # type: ignore[attr-defined]
    version_name = version.field.name if version is not None else None
    return [
        form[name]
        for name, f in form.fields.items()
        if name not in (BASE_FIELD, version_name)
        and not f.disabled
        and not isinstance(f.widget, forms.FileInput)
    ]


def snapshot(form: forms.BaseModelForm) -> str:
    """Return the signed snapshot of an unbound change form: the version and every field's value."""
    instance = form.instance
    items: Items = []
    for bound in _merged_fields(form):
        items += _items(bound, bound.value())
    version = getattr(instance, instance._concurrencymeta.field.attname)  # type: ignore[attr-defined]
    payload = {"v": version, "t": int(time.time()), "d": items}
    model: Any = type(instance)._meta.concrete_model
    return signing.dumps(payload, salt=_salt(model, instance.pk), compress=True)


def read_snapshot(model: type[models.Model], pk: Any, value: str) -> tuple[Any, datetime, QueryDict]:
    """Return the version, the time and the data of a snapshot; ``ValueError`` if it is forged or broken."""
    try:
        payload = signing.loads(value, salt=_salt(model._meta.concrete_model, pk))
        data = QueryDict(mutable=True)
        for key, item in payload["d"]:
            data.appendlist(str(key), str(item))
        shown = datetime.fromtimestamp(int(payload["t"]), tz=UTC)
        return payload["v"], shown, data
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise ValueError("invalid conflict snapshot") from exc


class _SnapshotField(forms.CharField):
    """The hidden snapshot: bookkeeping, never a change the user made (nor one the admin logs)."""

    widget = forms.HiddenInput

    def has_changed(self, initial: Any, data: Any) -> bool:
        return False


class _SnapshotForm(forms.ModelForm):
    """Adds the hidden, signed snapshot of what the form showed."""

    _concurrency_base = _SnapshotField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if (
            not self.is_bound
            and not self.instance._state.adding
            and hasattr(self.instance, "_concurrencymeta")
        ):
            self.fields[BASE_FIELD].initial = snapshot(self)


# -- The three-way comparison -------------------------------------------------


@dataclass
class FieldMerge:
    """One field of a three-way comparison."""

    name: str
    label: str
    base: str
    mine: str
    theirs: str
    status: str
    mine_items: Items = field(default_factory=list)
    theirs_items: Items = field(default_factory=list)

    @property
    def conflict(self) -> bool:
        return self.status == CONFLICT

    @property
    def merged(self) -> str | None:
        """Return the side taken automatically, or ``None`` when the user must choose."""
        return {UNCHANGED: MINE, MINE: MINE, SAME: MINE, THEIRS: THEIRS}.get(self.status)


@dataclass
class Merge:
    """A three-way comparison of a change form against the row in the database."""

    fields: list[FieldMerge]
    instance: models.Model
    version_items: Items

    @property
    def conflicts(self) -> list[FieldMerge]:
        return [f for f in self.fields if f.conflict]

    @property
    def changed(self) -> list[FieldMerge]:
        return [f for f in self.fields if f.status != UNCHANGED]


def _normal(bound: forms.BoundField, data: QueryDict) -> Any:
    """Return a comparable form of the value ``data`` holds for a field."""
    raw = bound.field.widget.value_from_datadict(data, {}, bound.html_name)
    try:
        value = bound.field.clean(raw)
    except forms.ValidationError:
        return ("invalid", str(raw))
    if isinstance(value, models.Model):
        return ("object", value.pk)
    if isinstance(value, models.QuerySet | list | tuple | set):
        return tuple(sorted(str(getattr(v, "pk", v)) for v in value))
    if value in (None, ""):
        return None
    return value


def _display(bound: forms.BoundField, data: QueryDict) -> str:
    """Return the value ``data`` holds for a field, as a person reads it."""
    raw = bound.field.widget.value_from_datadict(data, {}, bound.html_name)
    try:
        value = bound.field.clean(raw)
    except forms.ValidationError:
        return str(raw)
    choices = dict(getattr(bound.field, "flatchoices", None) or getattr(bound.field, "choices", None) or [])
    if isinstance(value, models.QuerySet | list | tuple | set):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(_("Yes") if value else _("No"))
    if value in (None, ""):
        return "—"
    if not isinstance(value, models.Model) and choices:
        try:
            return str(choices.get(value, value))
        except TypeError:
            pass
    return str(value)


def three_way(
    form_class: type[forms.BaseModelForm], instance: models.Model, base: QueryDict, mine: QueryDict
) -> Merge:
    """Compare what the user started from (``base``) and entered (``mine``) with ``instance``, the row now.

    ``base`` and ``mine`` are POST data of ``form_class``; ``instance`` is
    freshly read from the database.
    """
    current = form_class(instance=instance)
    theirs = QueryDict(mutable=True)
    merges = []
    for bound in _merged_fields(current):
        theirs_items = _items(bound, bound.value())
        for key, value in theirs_items:
            theirs.appendlist(key, value)
        mine_items = [(key, value) for key in _keys(bound) for value in mine.getlist(key)]
        b, m, t = _normal(bound, base), _normal(bound, mine), _normal(bound, theirs)
        if m == t:
            status = UNCHANGED if m == b else SAME
        elif m == b:
            status = THEIRS
        elif t == b:
            status = MINE
        else:
            status = CONFLICT
        merges.append(
            FieldMerge(
                name=bound.name,
                label=str(bound.label),
                base=_display(bound, base),
                mine=_display(bound, mine),
                theirs=_display(bound, theirs),
                status=status,
                mine_items=mine_items,
                theirs_items=theirs_items,
            )
        )
    version_name = instance._concurrencymeta.field.name  # type: ignore[attr-defined]
    version_items: Items = []
    if version_name in current.fields:
        version_items = _items(current[version_name], current[version_name].value())
    return Merge(merges, instance, version_items)


def changed_by(instance: models.Model, since: datetime) -> list[LogEntry]:
    """Return the admin log entries of changes to ``instance`` made after ``since``, newest first."""
    content_type = ContentType.objects.db_manager(instance._state.db or "default").get_for_model(
        instance, for_concrete_model=False
    )
    return list(
        LogEntry.objects.filter(
            content_type=content_type,
            object_id=str(instance.pk),
            action_flag__in=[CHANGE, DELETION],
            action_time__gte=since,
        )
        .select_related("user")
        .order_by("-action_time")[:5]
    )


# -- The admin adapter --------------------------------------------------------


class ConflictResolutionMixin:
    """Show a field-by-field resolution page when a change form is submitted against an old version.

    Put it before ``ConcurrentModelAdmin`` (or ``admin.ModelAdmin``) in the
    bases. Inline formsets are carried through unchanged, not merged.
    """

    resolve_conflict_template = "concurrency/resolve_conflict.html"

    def _resolves(self, request: HttpRequest, obj: Any) -> bool:
        """Return whether the change form of ``obj`` carries a snapshot (not for view-only users)."""
        if obj is None or not hasattr(obj, "_concurrencymeta"):
            return False
        return not hasattr(request, "user") or bool(
            self.has_change_permission(request, obj)  # type: ignore[attr-defined]
        )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        base = kwargs.get("form") or self.form  # type: ignore[attr-defined]
        if change and self._resolves(request, obj):
            kwargs["form"] = type(base.__name__, (_SnapshotForm, base), {})
        return super().get_form(request, obj, change, **kwargs)  # type: ignore[misc]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if not self._resolves(request, obj):
            return fieldsets
        return [*fieldsets, (None, {"fields": [BASE_FIELD], "classes": ["hidden"]})]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST" and BASE_FIELD not in request.POST and _resolution_keys(request.POST):
            # A resolution page's POST without its snapshot cannot be merged.
            return self.render_resolution_invalid(request, object_id)
        if request.method != "POST" or object_id is None or BASE_FIELD not in request.POST:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        response = self._resolve(request, object_id)
        if response is not None:
            return response
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        except RecordModifiedError:
            # A plain ModelAdmin lost a race after validation (ConcurrentModelAdmin
            # calls response_refused instead); the transaction is rolled back.
            response = self._resolve(request, object_id)
            if response is None:
                raise
            return response

    def response_refused(
        self,
        request: HttpRequest,
        error: RecordModifiedError,
        object_id: str | None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Show the resolution page when the database refused a save that had validated."""
        if object_id is not None and BASE_FIELD in request.POST:
            response = self._resolve(request, object_id)
            if response is not None:
                return response
        return super().response_refused(  # type: ignore[misc,no-any-return]
            request, error, object_id, form_url, extra_context
        )

    def _resolve(self, request: HttpRequest, object_id: str) -> HttpResponse | None:
        """Return the resolution page, or ``None`` to let the admin handle the POST."""
        model = self.model  # type: ignore[attr-defined]
        obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if obj is None or not hasattr(obj, "_concurrencymeta"):
            return None
        if not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            return None
        again = RESOLVE_FIELD in request.POST
        if again:
            form = self.get_form(request, obj, change=True)(instance=obj)
            if not _valid_resolution(request.POST, form):
                return self.render_resolution_invalid(request, object_id)
            request.POST = self._merged_post(request.POST)  # type: ignore[assignment]
        elif _resolution_keys(request.POST):
            return self.render_resolution_invalid(request, object_id)
        try:
            version, shown, base = read_snapshot(model, obj.pk, request.POST[BASE_FIELD])
        except ValueError:
            if again:
                return self.render_resolution_invalid(request, object_id)
            return None  # the form's own version check reports it
        current = getattr(obj, obj._concurrencymeta.field.attname)
        if current == version:
            return None
        form_class = self.get_form(request, obj, change=True)
        merge = three_way(form_class, obj, base, request.POST)
        return self.render_resolution(request, obj, merge, shown, again=again)

    def _merged_post(self, post: QueryDict) -> QueryDict:
        """Build the change form's POST from the choices made on the resolution page."""
        merged = QueryDict(mutable=True)
        choices = {key[len(CHOICE_PREFIX) :]: post[key] for key in post if key.startswith(CHOICE_PREFIX)}
        for key in post:
            if key.startswith((CHOICE_PREFIX, MINE_PREFIX, THEIRS_PREFIX)) or key == RESOLVE_FIELD:
                continue
            merged.setlist(key, post.getlist(key))
        for name, side in choices.items():
            prefix = THEIRS_PREFIX if side == THEIRS else MINE_PREFIX
            for key in post:
                if key.startswith(prefix) and key[len(prefix) :].split(".", 1)[0] == name:
                    merged.setlist(key[len(prefix) :].split(".", 1)[1], post.getlist(key))
        return merged

    def render_resolution(
        self, request: HttpRequest, obj: models.Model, merge: Merge, shown: datetime, *, again: bool = False
    ) -> HttpResponse:
        """Render the resolution page, from the template ``resolve_conflict_template``.

        ``again`` is true when the page itself was submitted and the row had changed once more.
        """
        opts = obj._meta
        theirs_snapshot = snapshot(self.get_form(request, obj, change=True)(instance=obj))
        hidden: Items = [(BASE_FIELD, theirs_snapshot), (RESOLVE_FIELD, "1"), *merge.version_items]
        covered = {key for f in merge.fields for key in _field_keys(f)} | {BASE_FIELD}
        version_keys = {key for key, _value in merge.version_items}
        for key in request.POST:
            if key in covered or key in version_keys or key.startswith(("_save", "_continue", "_addanother")):
                continue
            hidden += [(key, value) for value in request.POST.getlist(key)]
        for f in merge.fields:
            hidden += [(f"{MINE_PREFIX}{f.name}.{key}", value) for key, value in f.mine_items]
            hidden += [(f"{THEIRS_PREFIX}{f.name}.{key}", value) for key, value in f.theirs_items]
            if not f.conflict:
                hidden.append((f"{CHOICE_PREFIX}{f.name}", str(f.merged)))
        request.current_app = self.admin_site.name  # type: ignore[attr-defined]
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": _("Resolve the conflicting changes to %(obj)s") % {"obj": obj},
            "subtitle": None,
            "opts": opts,
            "original": obj,
            "merge": merge,
            "hidden": [(k, v) for k, v in hidden if k != "csrfmiddlewaretoken"],
            # Read for a row get_object() (get_queryset()) gave this user, and only
            # if they may see its history, as Django's history page asks.
            "changes": changed_by(obj, shown) if self.has_view_or_change_permission(request, obj) else [],  # type: ignore[attr-defined]
            "shown": shown,
            "again": again,
            "choice_prefix": CHOICE_PREFIX,
            "has_view_permission": True,
            "app_label": opts.app_label,
        }
        return TemplateResponse(request, self.resolve_conflict_template, context, status=409)

    def render_resolution_invalid(self, request: HttpRequest, object_id: str | None) -> HttpResponse:
        """Answer a resolution POST that cannot be read (400): nothing is saved."""
        opts = self.model._meta  # type: ignore[attr-defined]
        request.current_app = self.admin_site.name  # type: ignore[attr-defined]
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": _("Your choices could not be read"),
            "subtitle": None,
            "opts": opts,
            "object_id": object_id,
            "app_label": opts.app_label,
        }
        return TemplateResponse(request, "concurrency/resolve_invalid.html", context, status=400)


def _resolution_keys(post: QueryDict) -> list[str]:
    """Return the keys of ``post`` that only a resolution page sends."""
    return [
        key
        for key in post
        if key == RESOLVE_FIELD or key.startswith((CHOICE_PREFIX, MINE_PREFIX, THEIRS_PREFIX))
    ]


def _valid_resolution(post: QueryDict, form: forms.BaseForm) -> bool:
    """Return whether ``post`` is what the resolution page of ``form`` sends.

    One choice, ``mine`` or ``theirs``, for every merged field and for no
    other; values only for the merged fields' own inputs; no other
    ``_concurrency_*`` key.
    """
    fields = {bound.name: set(_keys(bound)) for bound in _merged_fields(form)}
    if post.getlist(RESOLVE_FIELD) != ["1"] or len(post.getlist(BASE_FIELD)) != 1:
        return False
    chosen = set()
    for key in post:
        if key in (BASE_FIELD, RESOLVE_FIELD):
            continue
        if key.startswith(CHOICE_PREFIX):
            name = key[len(CHOICE_PREFIX) :]
            if name not in fields or post.getlist(key) not in ([MINE], [THEIRS]):
                return False
            chosen.add(name)
        elif key.startswith((MINE_PREFIX, THEIRS_PREFIX)):
            prefix = MINE_PREFIX if key.startswith(MINE_PREFIX) else THEIRS_PREFIX
            name, dot, sub = key[len(prefix) :].partition(".")
            if not dot or name not in fields or sub not in fields[name]:
                return False
        elif key.startswith("_concurrency_"):
            return False
    return chosen == set(fields)


def _field_keys(merge: FieldMerge) -> Iterable[str]:
    return {key for key, _value in (*merge.mine_items, *merge.theirs_items)}
