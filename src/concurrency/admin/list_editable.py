"""``list_editable``: each row carries a signed version; a row changed by someone else is refused."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import model_ngettext
from django.core.exceptions import ValidationError
from django.db import models, router
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .._bases import ModelAdminBase
from ..conf import LIST_EDITABLE_POLICY_ABORT_ALL, conf
from ..core.options import is_checked, version_field_of
from ..exceptions import RecordModifiedError
from ..signing import sign_version, unsign_version
from .common import ATTEMPTS, NAMED_ROWS, ROW_SHOWN_KEY, ROW_VERSION_KEY, describe, row_names

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------------------
# list_editable


class _RowVersionInput(forms.HiddenInput):
    """The hidden primary key of a changelist row, followed by its signed version and shown values."""

    def __init__(
        self,
        version_name: str,
        version_value: str,
        extra: dict[str, str],
        attrs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(attrs)
        self.version_name = version_name
        self.version_value = version_value
        self.extra = extra

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        html = super().render(name, value, attrs, renderer)
        html = format_html(
            '{}<input type="hidden" name="{}" value="{}">', html, self.version_name, self.version_value
        )
        for extra_name, extra_value in self.extra.items():
            html = format_html('{}<input type="hidden" name="{}" value="{}">', html, extra_name, extra_value)
        return html


class _ChangelistRowForm(forms.ModelForm):
    """A changelist row that can be set aside: it then counts as unchanged and is not saved."""

    _concurrency_set_aside = False

    def has_changed(self) -> bool:
        return not self._concurrency_set_aside and super().has_changed()


class ChangelistFormSet(forms.BaseModelFormSet):
    """Compare each edited row's signed version with the row as loaded for this request."""

    #: Set per request by ``ConcurrencyListEditableMixin.get_changelist_formset``.
    concurrency_admin: ConcurrencyListEditableMixin
    concurrency_request: HttpRequest

    model: type[models.Model]

    def add_fields(self, form: forms.ModelForm, index: Any) -> None:
        super().add_fields(form, index)
        instance = getattr(form, "instance", None)
        field = version_field_of(self.model)
        pk_field = form.fields.get(self.model._meta.pk.name)
        if field is None or pk_field is None or instance is None or instance._state.adding:
            return
        name = form.add_prefix(ROW_VERSION_KEY)
        shown_name = form.add_prefix(ROW_SHOWN_KEY)
        if self.is_bound:
            # Shown again after an error: keep the version the user started from.
            value = str(self.data.get(name, ""))
            shown = str(self.data.get(shown_name, ""))
        else:
            value = sign_version(
                self.model._meta.concrete_model, instance.pk, getattr(instance, field.attname)
            )
            shown = json.dumps(
                {
                    key: form.fields[key].prepare_value(form.get_initial_for_field(form.fields[key], key))
                    for key in form.fields
                    if key not in (self.model._meta.pk.name, field.name)
                },
                default=str,
            )
        pk_field.widget = _RowVersionInput(name, value, {shown_name: shown}, pk_field.widget.attrs)

    def clean(self) -> None:
        super().clean()
        field = version_field_of(self.model)
        if field is None:
            return
        request = self.concurrency_request
        policy = self.concurrency_admin.get_list_editable_policy(request)
        conflicts: list[forms.ModelForm] = []
        for form in self.initial_forms:
            instance = form.instance
            if instance._state.adding or form.errors or not form.has_changed():
                continue
            try:
                version = unsign_version(
                    self.model._meta.concrete_model,
                    instance.pk,
                    self.data.get(form.add_prefix(ROW_VERSION_KEY)),
                )
            except ValueError:
                form.add_error(
                    None,
                    _("The version of this row is missing or not valid. Reload the page and edit it again."),
                )
                continue
            if not is_checked(instance):
                continue
            if version != getattr(instance, field.attname):
                # Changed since the page was loaded. The row may look edited only
                # because Django compares the posted values with the new ones:
                # if the user changed none of its fields, it is not theirs to save.
                if _sent(form) == []:
                    vars(form)["_concurrency_set_aside"] = True
                else:
                    conflicts.append(form)
                continue
            # The UPDATE is made against the version the user saw.
            setattr(instance, field.attname, version)
        for form in conflicts:
            if policy == LIST_EDITABLE_POLICY_ABORT_ALL:
                form.add_error(
                    None,
                    _("Someone else changed this row after the page was loaded. Nothing was saved."),
                )
            else:
                vars(form)["_concurrency_set_aside"] = True
        vars(request)["_concurrency_list_conflicts"] = [
            (form.instance.pk, _attempted(form)) for form in conflicts
        ]
        vars(request)["_concurrency_list_policy"] = policy


def _sent(form: forms.ModelForm) -> list[str] | None:
    """Return the fields of a changelist row the user changed, ``None`` if the page did not say.

    The row carries the values it was shown with; ``form.changed_data``
    compares with the row as it is now, so it also lists the fields someone
    else changed since.
    """
    try:
        shown = json.loads(str(form.data.get(form.add_prefix(ROW_SHOWN_KEY), "")))
    except ValueError:
        return None
    if not isinstance(shown, dict):
        return None
    changed = []
    for name in form.changed_data:
        field = form.fields[name]
        if name in shown and not _differs(field, shown[name], form[name].data):
            continue
        changed.append(name)
    return changed


def _differs(field: forms.Field, shown: Any, data: Any) -> bool:
    """Return whether ``data`` differs from the value the field was shown with (as sent in JSON)."""
    # As sent first (a choice's key, a string); parsed for values JSON turned into text (dates).
    if not field.has_changed(shown, data):
        return False
    try:
        return bool(field.has_changed(field.to_python(shown), data))
    except (ValidationError, TypeError, ValueError):
        return True


def _attempted(form: forms.ModelForm) -> str:
    """Describe what the user typed into a row that was not saved."""
    parts = []
    sent = _sent(form)
    for name in form.changed_data if sent is None else sent:
        field = form.fields[name]
        value = form.cleaned_data.get(name) if hasattr(form, "cleaned_data") else None
        shown = _choice_label(field, value)
        parts.append(f"{capfirst(field.label or name)}: {shown}")
    return "; ".join(parts)


def _choice_label(field: forms.Field, value: Any) -> Any:
    for key, label in getattr(field, "choices", None) or ():
        if isinstance(label, list | tuple):
            for sub_key, sub_label in label:
                if str(sub_key) == str(value):
                    return sub_label
        elif str(key) == str(value):
            return label
    return value


class ConcurrencyListEditableMixin(ModelAdminBase):
    """Check ``list_editable`` saves against the version each row had when the page was loaded.

    Every row carries its version, signed for that row, next to its hidden
    primary key. An edited row whose version no longer matches the row loaded
    for the save is a conflict, handled by ``CONCURRENCY_POLICY`` (read on
    every request; ``list_editable_policy`` on the admin overrides it):

    * ``LIST_EDITABLE_POLICY_SILENT``: the other rows are saved; a message
      names the conflicting rows and what the user had typed, and the list
      shows them with their current values;
    * ``LIST_EDITABLE_POLICY_ABORT_ALL``: nothing is saved; the list is shown
      again with the user's input and an error on each conflicting row.

    The comparison uses rows Django already loads, so it costs no query. A
    conflict that lands between that comparison and the UPDATE makes the
    UPDATE match no row; the request is then rolled back and handled again
    against the new state.
    """

    list_editable_policy: int | None = None

    def get_list_editable_policy(self, request: HttpRequest) -> int:
        """Return the conflict policy for this request."""
        if self.list_editable_policy is not None:
            return self.list_editable_policy
        return int(conf.POLICY)

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> Any:
        if version_field_of(self.model) is not None:
            base = kwargs.get("form") or forms.ModelForm
            if not issubclass(base, _ChangelistRowForm):
                kwargs["form"] = type(base.__name__, (_ChangelistRowForm, base), {"__module__": __name__})
        return super().get_changelist_form(request, **kwargs)

    def get_changelist_formset(self, request: HttpRequest, **kwargs: Any) -> type[forms.BaseModelFormSet]:
        if version_field_of(self.model) is None:
            return super().get_changelist_formset(request, **kwargs)
        base = kwargs.get("formset") or forms.BaseModelFormSet
        if not issubclass(base, ChangelistFormSet):
            base = type(base.__name__, (ChangelistFormSet, base), {"__module__": __name__})
        kwargs["formset"] = base
        formset = super().get_changelist_formset(request, **kwargs)
        # A class of its own per request (as Django's factory makes anyway), so
        # binding the request to it is safe across threads.
        formset.concurrency_admin = self  # type: ignore[attr-defined]
        formset.concurrency_request = request  # type: ignore[attr-defined]
        return formset

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        saving = (
            request.method == "POST"
            and "_save" in request.POST
            and bool(self.list_editable)
            and version_field_of(self.model) is not None
        )
        if not saving:
            return super().changelist_view(request, extra_context)
        for _attempt in range(ATTEMPTS):
            vars(request)["_concurrency_list_conflicts"] = []
            try:
                response = super().changelist_view(request, extra_context)
            except RecordModifiedError:
                # Lost a race after validation: everything was rolled back;
                # validating again sees the other write.
                continue
            self._report_list_conflicts(request)
            return response
        self.message_user(
            request,
            _("These rows are being changed by others right now, so nothing was saved. Try again."),
            messages.ERROR,
        )
        return HttpResponseRedirect(request.get_full_path())

    def _report_list_conflicts(self, request: HttpRequest) -> None:
        conflicts = getattr(request, "_concurrency_list_conflicts", [])
        if not conflicts:
            return
        policy = getattr(request, "_concurrency_list_policy", None)
        # One query, only when there are conflicts: name the rows as they are now,
        # through get_queryset(), so a row this user may no longer see is not named.
        model = self.model
        pks = [pk for pk, _a in conflicts[:NAMED_ROWS]]
        rows = self.get_queryset(request).using(router.db_for_write(model))
        current = {obj.pk: obj for obj in rows.filter(pk__in=pks)}
        conflicts = [
            (current.get(pk, f"{model._meta.pk.name}={pk}"), attempted) for pk, attempted in conflicts
        ]
        if policy == LIST_EDITABLE_POLICY_ABORT_ALL:
            self.message_user(
                request,
                ngettext(
                    "%(names)s was changed by someone else after this page was loaded, so nothing was "
                    "saved. Your input is shown below; reload the page to see the current values.",
                    "%(names)s were changed by someone else after this page was loaded, so nothing was "
                    "saved. Your input is shown below; reload the page to see the current values.",
                    len(conflicts),
                )
                % {"names": row_names(obj for obj, _a in conflicts)},
                messages.ERROR,
            )
            return
        for obj, attempted in conflicts[:NAMED_ROWS]:
            self.message_user(
                request,
                _(
                    "%(name)s %(obj)s was changed by someone else after this page was loaded, so the "
                    "values you sent for it were not saved (%(attempted)s). It is shown with its current "
                    "values."
                )
                % {
                    "name": capfirst(str(model._meta.verbose_name)),
                    "obj": describe(obj),
                    "attempted": attempted,
                },
                messages.WARNING,
            )
        if len(conflicts) > NAMED_ROWS:
            rest = len(conflicts) - NAMED_ROWS
            self.message_user(
                request,
                _("%(count)d more %(name)s were not saved for the same reason.")
                % {"count": rest, "name": model_ngettext(self.opts, rest)},
                messages.WARNING,
            )
