"""``ConflictResolutionMixin``: the resolution page of the admin's change form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.db import models
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from .._bases import ModelAdminBase
from ..core.options import options, options_of, version_of
from ..exceptions import RecordModifiedError
from .inlines import Malformed, inline_three_way, merged_rows
from .merge import InlineMerge, Merge, Page, changed_by, three_way
from .posted import chosen, entered, inline_keys, one, resolution_keys, valid_resolution
from .snapshot import (
    BASE_FIELD,
    CHOICE_PREFIX,
    MINE,
    RESOLVE_FIELD,
    STATE_FIELD,
    Items,
    Snapshot,
    SnapshotForm,
    State,
    as_query,
    form_model,
    keys_of,
    merged_fields,
    read_snapshot_of,
    read_state,
    rows_of,
    sign_state,
    snapshot,
)

# -- The admin adapter --------------------------------------------------------


def _version_keys(form: forms.BaseForm) -> list[str]:
    version = options(form_model(form)).field.name
    return keys_of(form[version]) if version in form.fields else []


class ConflictResolutionMixin(ModelAdminBase):
    """Show a field-by-field resolution page when a change form is submitted against an old version.

    Put it before ``ConcurrentModelAdmin`` (or ``admin.ModelAdmin``) in the
    bases. Inline rows are compared and merged too, row by row and field by
    field; what the page saves is built from the rows as they are now plus the
    user's own changes, and checked against the version the page showed.
    """

    resolve_conflict_template = "concurrency/resolve_conflict.html"

    def _resolves(self, request: HttpRequest, obj: Any) -> bool:
        """Return whether the change form of ``obj`` carries a snapshot (not for view-only users)."""
        if obj is None or options_of(obj) is None:
            return False
        return not hasattr(request, "user") or bool(self.has_change_permission(request, obj))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        base = kwargs.get("form") or self.form
        if change and self._resolves(request, obj):
            kwargs["form"] = type(base.__name__, (SnapshotForm, base), {})
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if not self._resolves(request, obj):
            return fieldsets
        return [*fieldsets, (None, {"fields": [BASE_FIELD], "classes": ["hidden"]})]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        """Put the inline rows the page shows into the snapshot of a change form just opened."""
        form = getattr(context.get("adminform"), "form", None)
        if (
            change
            and obj is not None
            and form is not None
            and not form.is_bound
            and BASE_FIELD in form.fields
        ):
            formsets = [inline.formset for inline in context.get("inline_admin_formsets", ())]
            form.fields[BASE_FIELD].initial = snapshot(form, formsets)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST" and BASE_FIELD not in request.POST and resolution_keys(request.POST):
            # A resolution page's POST without its snapshot cannot be merged.
            return self.render_resolution_invalid(request, object_id)
        if request.method != "POST" or object_id is None or BASE_FIELD not in request.POST:
            return super().changeform_view(request, object_id, form_url, extra_context)
        response = self._resolve(request, object_id)
        if response is not None:
            return response
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
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
        return super().response_refused(  # type: ignore[misc]
            request, error, object_id, form_url, extra_context
        )

    def _inline_formsets(
        self, request: HttpRequest, obj: Any, data: QueryDict | None = None
    ) -> list[tuple[forms.BaseFormSet, Any]]:
        """Return the inline formsets of ``obj``'s change form (bound to ``data`` if given) and inlines."""
        formsets = []
        prefixes: dict[str, int] = {}
        for formset_class, inline in self.get_formsets_with_inlines(request, obj):
            prefix = formset_class.get_default_prefix()
            prefixes[prefix] = prefixes.get(prefix, 0) + 1
            if prefixes[prefix] != 1 or not prefix:
                prefix = f"{prefix}-{prefixes[prefix]}"
            kwargs = self.get_formset_kwargs(request, obj, inline, prefix)
            for key in ("data", "files", "save_as_new"):
                kwargs.pop(key, None)
            if data is not None:
                kwargs["data"] = data
            formsets.append((formset_class(**kwargs), inline))
        return formsets

    def _compare(
        self,
        request: HttpRequest,
        obj: Any,
        base: Snapshot,
        mine: QueryDict,
        theirs: Snapshot | None = None,
    ) -> tuple[Merge, list[InlineMerge], list[forms.BaseFormSet]]:
        """Compare ``base``, ``mine`` and the object now (or ``theirs``), inline rows included.

        Return the merge, the inline merges and the unbound formsets of the
        rows now; ``Malformed`` if ``mine`` is not what the change form posts.
        """
        form_class = self.get_form(request, obj, change=True)
        merge = three_way(form_class, obj, base.data, mine, None if theirs is None else theirs.data)
        current = self._inline_formsets(request, obj)
        posted = self._inline_formsets(request, obj, data=mine)
        prefixes = {str(formset.prefix) for formset, _inline in current}
        if set(base.rows) != prefixes or (theirs is not None and set(theirs.rows) != prefixes):
            raise Malformed("inlines")
        inlines = []
        for (formset, inline), (bound, _inline) in zip(current, posted, strict=True):
            prefix = str(formset.prefix)
            now = rows_of([formset])[prefix] if theirs is None else theirs.rows[prefix]
            label = capfirst(str(inline.verbose_name_plural))
            inlines.append(inline_three_way(formset, bound, base.rows[prefix], now, label))
        return merge, inlines, [formset for formset, _inline in current]

    def _resolve(self, request: HttpRequest, object_id: str) -> HttpResponse | None:
        """Return the resolution page, or ``None`` to let the admin handle the POST."""
        if "_saveasnew" in request.POST:
            return None  # a new object conflicts with nobody
        model = self.model
        obj = self.get_object(request, object_id)
        if obj is None or options_of(obj) is None:
            return None
        if not self.has_change_permission(request, obj):
            return None
        if RESOLVE_FIELD in request.POST:
            return self._resolve_again(request, obj, object_id)
        if resolution_keys(request.POST):
            return self.render_resolution_invalid(request, object_id)
        try:
            base = read_snapshot_of(model, obj.pk, request.POST[BASE_FIELD])
        except ValueError:
            return None  # the form's own version check reports it
        if version_of(obj) == base.version:
            return None
        try:
            merge, inlines, formsets = self._compare(request, obj, base, request.POST)
        except Malformed:
            return None  # not what the change form posts: its own version check refuses it
        page = Page(merge, inlines, base.shown, base.value, entered(request.POST))
        return self.render_resolution(request, obj, page, formsets=formsets)

    def _resolve_again(self, request: HttpRequest, obj: Any, object_id: str) -> HttpResponse | None:
        """Save the choices made on a resolution page, or show the page again."""
        model = self.model
        post = request.POST
        try:
            theirs = read_snapshot_of(model, obj.pk, one(post, BASE_FIELD))
            state = read_state(model, obj.pk, one(post, STATE_FIELD))
            started = read_snapshot_of(model, obj.pk, state.started)
        except ValueError:
            return self.render_resolution_invalid(request, object_id)
        form = self.get_form(request, obj, change=True)(instance=obj)
        if state.version != theirs.version or not valid_resolution(post, form):
            return self.render_resolution_invalid(request, object_id)
        try:
            merge, inlines, formsets = self._compare(request, obj, started, as_query(state.mine), theirs)
        except Malformed:
            return self.render_resolution_invalid(request, object_id)
        if inline_keys(post, inlines):
            return self.render_resolution_invalid(request, object_id)
        page = Page(merge, inlines, started.shown, started.value, state.mine, theirs.value, theirs.version)
        chosen = {key: post[key] for key in post if key.startswith(CHOICE_PREFIX)}
        if not set(chosen) <= set(page.choices):
            return self.render_resolution_invalid(request, object_id)
        page.choose(chosen)
        if set(page.choices) - set(chosen):
            # The same page again, the choices made kept: saving needs every one.
            version_items = [(key, value) for key in _version_keys(form) for value in post.getlist(key)]
            return self.render_resolution(request, obj, page, missing=True, version_items=version_items)
        merged = self._merged_post(post, page, form)
        request.POST = merged  # type: ignore[assignment]
        if version_of(obj) == theirs.version:
            return None  # saved by the admin, checked against the version the page showed
        try:
            merge, inlines, formsets = self._compare(request, obj, theirs, merged)
        except Malformed:
            return self.render_resolution_invalid(request, object_id)
        page = Page(merge, inlines, theirs.shown, theirs.value, entered(merged))
        return self.render_resolution(request, obj, page, formsets=formsets, again=True)

    def _merged_post(self, post: QueryDict, page: Page, form: forms.BaseForm) -> QueryDict:
        """Build the change form's POST from what the user entered, the rows now and the choices made."""
        fields = {bound.name: keys_of(bound) for bound in merged_fields(form)}
        covered = {key for keys in fields.values() for key in keys} | set(_version_keys(form))
        prefixes = tuple(f"{inline.prefix}-" for inline in page.inlines)
        merged = QueryDict(mutable=True)
        mine = as_query(page.mine)
        for key in mine:
            if key not in covered and not key.startswith(prefixes):
                merged.setlist(key, mine.getlist(key))
        for key in post:
            # The token, the button pressed, the version shown and the snapshot of the rows now.
            if key == BASE_FIELD or not key.startswith("_concurrency_"):
                merged.setlist(key, post.getlist(key))
        for f in page.merge.fields:
            items = f.mine_items if f.taken == MINE else f.theirs_items
            for key in fields.get(f.name, ()):
                merged.setlist(key, [value for k, value in items if k == key])
                if not merged.getlist(key):
                    del merged[key]
        for inline in page.inlines:
            for key, value in merged_rows(inline):
                merged.appendlist(key, value)
        return merged

    def render_resolution(
        self,
        request: HttpRequest,
        obj: models.Model,
        page: Page,
        *,
        formsets: Sequence[forms.BaseFormSet] = (),
        again: bool = False,
        missing: bool = False,
        version_items: Items | None = None,
    ) -> HttpResponse:
        """Render the resolution page, from the template ``resolve_conflict_template``.

        ``again`` is true when the page itself was submitted and the row had
        changed once more; ``missing`` when it was submitted without a choice
        for every value both sides changed.
        """
        opts = obj._meta
        if page.theirs is None:
            page.theirs = snapshot(self.get_form(request, obj, change=True)(instance=obj), formsets)
            page.version = version_of(obj)
        state = sign_state(type(obj), obj.pk, State(page.version, page.started, page.mine))
        if version_items is None:
            version_items = page.merge.version_items
        hidden: Items = [
            (BASE_FIELD, page.theirs),
            (STATE_FIELD, state),
            (RESOLVE_FIELD, "1"),
            *version_items,
        ]
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": _("Resolve the conflicting changes to %(obj)s") % {"obj": obj},
            "subtitle": None,
            "opts": opts,
            "original": obj,
            "merge": page.merge,
            "inlines": [inline for inline in page.inlines if inline.shown],
            "choices": len(page.choices),
            "missing": len([name for name in page.choices if name not in chosen(page)]) if missing else 0,
            "hidden": hidden,
            # Read for a row get_object() (get_queryset()) gave this user, and only
            # if they may see its history, as Django's history page asks.
            "changes": changed_by(obj, page.shown) if self._may_view(request, obj) else [],
            "shown": page.shown,
            "again": again,
            "has_view_permission": True,
            "app_label": opts.app_label,
        }
        return TemplateResponse(request, self.resolve_conflict_template, context, status=409)

    def _may_view(self, request: HttpRequest, obj: Any) -> bool:
        return bool(self.has_view_or_change_permission(request, obj))

    def render_resolution_invalid(self, request: HttpRequest, object_id: str | None) -> HttpResponse:
        """Answer a resolution POST that cannot be read (400): nothing is saved."""
        opts = self.model._meta
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": _("Your choices could not be read"),
            "subtitle": None,
            "opts": opts,
            "object_id": object_id,
            "app_label": opts.app_label,
        }
        return TemplateResponse(request, "concurrency/resolve_invalid.html", context, status=400)
