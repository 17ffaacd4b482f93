"""Admin integration: the change form, actions and ``list_editable`` of versioned models.

Each part is a thin adapter over the compare-and-swap of :mod:`concurrency.core`:

* the change form sends the version through :class:`~concurrency.forms.ConcurrentForm`;
  a save refused by the database (a change that landed after ``clean()``) is
  rolled back and the form shown again with an error and the user's input;
* action checkboxes carry ``pk,version``; one query compares the selection with
  the database before the action runs;
* ``list_editable`` rows carry a signed version next to their hidden primary key;
  the rows the changelist already loads are compared with it, so the check adds
  no query, and a refused UPDATE re-runs the request against the new state.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import TO_FIELD_VAR
from django.contrib.admin.utils import flatten_fieldsets, model_ngettext, unquote
from django.core import checks
from django.core.exceptions import ValidationError
from django.db import connections, models, router
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import select_template
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .compat import DJANGO_61
from .conf import LIST_EDITABLE_POLICY_ABORT_ALL, conf
from .core.options import is_checked, options, version_field_of
from .exceptions import RecordModifiedError
from .fields import VersionField
from .forms import ConcurrentForm, VersionWidget
from .live import LiveNoticeMixin
from .signing import sign_version, unsign_version
from .templatetags.concurrency import identity

if TYPE_CHECKING:
    from django.db.models import QuerySet

__all__ = [
    "ConcurrencyActionMixin",
    "ConcurrencyListEditableMixin",
    "ConcurrentModelAdmin",
]

#: Suffix of the hidden input that carries a list_editable row's signed version
#: (``form-3-_concurrency_version``), rendered next to the row's hidden primary key.
ROW_VERSION_KEY = "_concurrency_version"
# Suffix of the hidden input holding the values a list_editable row was shown with
# (JSON), so that a conflict lists only the fields the user changed.
_ROW_SHOWN_KEY = "_concurrency_shown"

# A request that keeps losing races is answered with a message after this many tries.
_ATTEMPTS = 3
# Conflicting rows named one by one in messages; the rest are counted.
_NAMED_ROWS = 10


def _describe(obj: Any) -> str:
    return f"“{obj}”"


def _names(objects: Iterable[Any]) -> str:
    items = list(objects)
    shown = ", ".join(_describe(obj) for obj in items[:_NAMED_ROWS])
    if len(items) > _NAMED_ROWS:
        shown += " " + _("and %(count)d more") % {"count": len(items) - _NAMED_ROWS}
    return shown


# ---------------------------------------------------------------------------
# Actions


class ConcurrencyActionMixin:
    """Run admin actions only on rows still at the version the user saw.

    The action checkboxes are valued ``"<pk>,<version>"``. Before the action
    runs, one query reads the versions of the selected rows that
    ``get_queryset()`` shows this user (locking them ``FOR UPDATE`` inside a
    transaction, e.g. with ``ATOMIC_REQUESTS``); if any of them changed, the
    action is not run and a message names them. A selected pk outside
    ``get_queryset()`` (hidden from this user, or deleted) is left to Django,
    which leaves it out of the action: whatever version it was posted with,
    the answer is the same, so the check tells nothing about rows the user
    cannot see. Saves the action makes are version-checked as always.

    With *select across* ("Select all N"), the rows on the page are checked;
    rows on other pages were never shown and are not. Set
    ``check_concurrent_action = False`` to skip the check (the selection is
    still honoured).
    """

    check_concurrent_action = True

    def get_confirmation_template(self) -> str:
        """Return the template of the ``delete_selected`` confirmation page."""
        if DJANGO_61:
            return "concurrency/delete_selected_confirmation.html"
        return "concurrency/delete_selected_confirmation_52.html"

    @property
    def delete_selected_confirmation_template(self) -> str | None:
        """Post ``pk,version`` from the confirmation page, so the deletion is checked too."""
        return self.get_confirmation_template() if self.check_concurrent_action else None

    def action_checkbox(self, obj: Any) -> SafeString:
        """Render the row's checkbox with ``"<pk>,<version>"`` as its value."""
        field = version_field_of(type(obj))
        if field is None or not self.check_concurrent_action:
            return super().action_checkbox(obj)  # type: ignore[misc,no-any-return]
        checkbox = forms.CheckboxInput(
            {
                "class": "action-select",
                "aria-label": format_html(_("Select this object for an action - {}"), str(obj)),
            },
            lambda value: False,
        )
        return checkbox.render(helpers.ACTION_CHECKBOX_NAME, identity(obj))

    def response_action(
        self, request: HttpRequest, queryset: QuerySet, *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        """Check the selection, then let Django run the action on the selected pks."""
        location = kwargs.get("action_location", args[0] if args else None)
        if location is not None and location.name != "CHANGE_LIST":
            # Django 6.1's change-form actions post the bare pk of the object shown.
            return super().response_action(request, queryset, *args, **kwargs)  # type: ignore[misc]
        field = version_field_of(queryset.model)
        values = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if field is None or not values or not self.check_concurrent_action:
            return super().response_action(request, queryset, *args, **kwargs)  # type: ignore[misc]
        selection = self._parse_selection(request, queryset.model, values)
        if selection is None:
            return None
        using = router.db_for_write(queryset.model)
        if not self._selection_is_current(request, queryset, field, selection, using):
            return None
        original = request.POST
        stripped = request.POST.copy()
        stripped.setlist(helpers.ACTION_CHECKBOX_NAME, list(dict.fromkeys(pk for pk, _v in selection)))
        request.POST = stripped  # type: ignore[misc,assignment]
        try:
            return super().response_action(request, queryset, *args, **kwargs)  # type: ignore[misc]
        finally:
            request.POST = original  # type: ignore[misc]

    def _parse_selection(
        self, request: HttpRequest, model: type[models.Model], values: list[str]
    ) -> list[tuple[str, int]] | None:
        """Split ``"<pk>,<version>"`` values; report a malformed one and return ``None``."""
        selection: list[tuple[str, int]] = []
        pk_field = model._meta.pk
        for value in values:
            # The version is the last part: a string pk may contain commas.
            pk, sep, version = value.rpartition(",")
            try:
                if not sep or not pk:
                    raise ValueError(value)
                parsed = int(version)
                # The range validators refuse a pk the database driver cannot bind.
                pk_field.run_validators(pk_field.to_python(pk))
            except (ValueError, ValidationError):
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    _(
                        "The selection could not be read (%(value)s is not “id,version”). "
                        "Reload the page and select the items again. No items have been changed."
                    )
                    % {"value": repr(value)[:60]},
                    messages.ERROR,
                )
                return None
            selection.append((pk, parsed))
        return selection

    def _selection_is_current(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        field: VersionField,
        selection: list[tuple[str, int]],
        using: str,
    ) -> bool:
        """Compare the selection with the database in one query; report stale rows."""
        model = queryset.model
        to_python = model._meta.pk.to_python
        wanted: dict[Any, set[int]] = {}
        for pk, version in selection:
            wanted.setdefault(to_python(pk), set()).add(version)
        # Only rows get_queryset() shows this user are compared: a pk outside it
        # answers as Django answers (left out of the action), never with its
        # version. The changelist's own filters are not applied (they may join
        # or use DISTINCT, which FOR UPDATE refuses): any change bumps the version.
        visible = self._visible(request, using).filter(pk__in=list(wanted)).order_by().values("pk")
        rows = (
            model._base_manager.using(using)
            .filter(pk__in=visible)
            .order_by()
            .values_list("pk", field.attname)
        )
        connection = connections[using]
        if connection.in_atomic_block and connection.features.has_select_for_update:
            # In a transaction (ATOMIC_REQUESTS, or the caller's): hold the rows
            # until the action is done, so nothing changes between check and action.
            rows = rows.select_for_update()
        current = dict(rows)
        stale = [pk for pk, versions in wanted.items() if pk in current and versions != {current[pk]}]
        if not stale:
            return True
        found = {obj.pk: obj for obj in self._visible(request, using).filter(pk__in=stale[: _NAMED_ROWS + 1])}
        named = [found.get(pk, f"{model._meta.pk.name}={pk}") for pk in stale]
        self.message_user(  # type: ignore[attr-defined]
            request,
            ngettext(
                "%(names)s was changed by someone else after this page was loaded. The action was "
                "not run; no items have been changed. The list now shows the current values: select "
                "the items again to run it.",
                "%(names)s were changed by someone else after this page was loaded. The action was "
                "not run; no items have been changed. The list now shows the current values: select "
                "the items again to run it.",
                len(stale),
            )
            % {"names": _names(named)},
            messages.ERROR,
        )
        return False

    def _visible(self, request: HttpRequest, using: str) -> QuerySet:
        """Return the rows this user may see in this admin: ``get_queryset()``, on ``using``."""
        return self.get_queryset(request).using(using)  # type: ignore[attr-defined,no-any-return]


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


class _ChangelistFormSet(forms.BaseModelFormSet):
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
        shown_name = form.add_prefix(_ROW_SHOWN_KEY)
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
                    form._concurrency_set_aside = True  # type: ignore[attr-defined]
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
                form._concurrency_set_aside = True  # type: ignore[attr-defined]
        request._concurrency_list_conflicts = [  # type: ignore[attr-defined]
            (form.instance.pk, _attempted(form)) for form in conflicts
        ]
        request._concurrency_list_policy = policy  # type: ignore[attr-defined]


def _sent(form: forms.ModelForm) -> list[str] | None:
    """Return the fields of a changelist row the user changed, ``None`` if the page did not say.

    The row carries the values it was shown with; ``form.changed_data``
    compares with the row as it is now, so it also lists the fields someone
    else changed since.
    """
    try:
        shown = json.loads(str(form.data.get(form.add_prefix(_ROW_SHOWN_KEY), "")))
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


class ConcurrencyListEditableMixin:
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
        if version_field_of(self.model) is not None:  # type: ignore[attr-defined]
            base = kwargs.get("form") or forms.ModelForm
            if not issubclass(base, _ChangelistRowForm):
                kwargs["form"] = type(base.__name__, (_ChangelistRowForm, base), {"__module__": __name__})
        return super().get_changelist_form(request, **kwargs)  # type: ignore[misc]

    def get_changelist_formset(self, request: HttpRequest, **kwargs: Any) -> type[forms.BaseModelFormSet]:
        if version_field_of(self.model) is None:  # type: ignore[attr-defined]
            return super().get_changelist_formset(request, **kwargs)  # type: ignore[misc]
        base = kwargs.get("formset") or forms.BaseModelFormSet
        if not issubclass(base, _ChangelistFormSet):
            base = type(base.__name__, (_ChangelistFormSet, base), {"__module__": __name__})
        kwargs["formset"] = base
        formset = super().get_changelist_formset(request, **kwargs)  # type: ignore[misc]
        # A class of its own per request (as Django's factory makes anyway), so
        # binding the request to it is safe across threads.
        formset.concurrency_admin = self
        formset.concurrency_request = request
        return formset

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        saving = (
            request.method == "POST"
            and "_save" in request.POST
            and bool(self.list_editable)  # type: ignore[attr-defined]
            and version_field_of(self.model) is not None  # type: ignore[attr-defined]
        )
        if not saving:
            return super().changelist_view(request, extra_context)  # type: ignore[misc]
        for _attempt in range(_ATTEMPTS):
            request._concurrency_list_conflicts = []  # type: ignore[attr-defined]
            try:
                response = super().changelist_view(request, extra_context)  # type: ignore[misc]
            except RecordModifiedError:
                # Lost a race after validation: everything was rolled back;
                # validating again sees the other write.
                continue
            self._report_list_conflicts(request)
            return response
        self.message_user(  # type: ignore[attr-defined]
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
        model = self.model  # type: ignore[attr-defined]
        pks = [pk for pk, _a in conflicts[:_NAMED_ROWS]]
        rows = self.get_queryset(request).using(router.db_for_write(model))  # type: ignore[attr-defined]
        current = {obj.pk: obj for obj in rows.filter(pk__in=pks)}
        conflicts = [
            (current.get(pk, f"{model._meta.pk.name}={pk}"), attempted) for pk, attempted in conflicts
        ]
        if policy == LIST_EDITABLE_POLICY_ABORT_ALL:
            self.message_user(  # type: ignore[attr-defined]
                request,
                ngettext(
                    "%(names)s was changed by someone else after this page was loaded, so nothing was "
                    "saved. Your input is shown below; reload the page to see the current values.",
                    "%(names)s were changed by someone else after this page was loaded, so nothing was "
                    "saved. Your input is shown below; reload the page to see the current values.",
                    len(conflicts),
                )
                % {"names": _names(obj for obj, _a in conflicts)},
                messages.ERROR,
            )
            return
        for obj, attempted in conflicts[:_NAMED_ROWS]:
            self.message_user(  # type: ignore[attr-defined]
                request,
                _(
                    "%(name)s %(obj)s was changed by someone else after this page was loaded, so the "
                    "values you sent for it were not saved (%(attempted)s). It is shown with its current "
                    "values."
                )
                % {
                    "name": capfirst(str(model._meta.verbose_name)),
                    "obj": _describe(obj),
                    "attempted": attempted,
                },
                messages.WARNING,
            )
        if len(conflicts) > _NAMED_ROWS:
            rest = len(conflicts) - _NAMED_ROWS
            self.message_user(  # type: ignore[attr-defined]
                request,
                _("%(count)d more %(name)s were not saved for the same reason.")
                % {"count": rest, "name": model_ngettext(self.opts, rest)},  # type: ignore[attr-defined]
                messages.WARNING,
            )


# ---------------------------------------------------------------------------
# The ModelAdmin


class _LoadedRowForm(ConcurrentForm):
    """Compare the submitted version with the row as the admin loaded it for this request.

    The admin reads the row through ``get_object()``, that is ``get_queryset()``,
    just before the form validates: the early check uses that row rather than
    a read of its own that would look past ``get_queryset()``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Validation writes the submitted values into the instance: keep the row as loaded.
        self._concurrency_loaded = copy.copy(self.instance)

    def _current_version(self) -> list[Any]:
        return [getattr(self.instance, options(self.instance).field.attname)]


class _InlineFormSet(forms.BaseModelFormSet):
    """An inline formset that refuses, and marks, the rows someone else changed since the page was loaded.

    Each existing row's submitted version is compared with the row the formset
    loads for this request through the inline's queryset (no query of its own).
    A row whose version moved on and that would be saved (it differs from the
    stored row, or is marked for deletion) gets an error naming it as stored
    now: saving it would overwrite the other person's work.
    """

    model: type[models.Model]

    def add_fields(self, form: forms.ModelForm, index: Any) -> None:
        super().add_fields(form, index)
        instance = getattr(form, "instance", None)
        if instance is not None and not instance._state.adding and instance.pk is not None:
            # Validation writes the submitted values into the instance: keep the row as loaded.
            form._concurrency_loaded = copy.copy(instance)  # type: ignore[attr-defined]

    def clean(self) -> None:
        super().clean()
        field = version_field_of(self.model)
        if field is None:
            return
        for form in self.initial_forms:
            loaded = getattr(form, "_concurrency_loaded", None)
            cleaned = getattr(form, "cleaned_data", None)
            if loaded is None or cleaned is None or cleaned.get(field.name) is None or not is_checked(loaded):
                continue
            if cleaned[field.name] == getattr(loaded, field.attname):
                continue
            deleting = self.can_delete and self._should_delete_form(form)  # type: ignore[attr-defined]
            if not (form.has_changed() or deleting):
                continue
            form.add_error(
                None,
                _(
                    "Someone else changed %(name)s %(obj)s after you opened this page, so your changes were "
                    "not saved. Reload the page to see its current values."
                )
                % {"name": loaded._meta.verbose_name, "obj": _describe(loaded)},
            )


class _RefusedForm(forms.BaseForm):
    """Marks the change form of a request whose save the database refused."""

    concurrency_refused: RecordModifiedError

    def clean(self) -> dict[str, Any] | None:
        cleaned_data = super().clean()
        if not self.errors:
            self.add_error(None, _refused_message(self.concurrency_refused, getattr(self, "instance", None)))
        return cleaned_data


def _restore(instance: models.Model, loaded: models.Model) -> None:
    for field in loaded._meta.concrete_fields:
        setattr(instance, field.attname, getattr(loaded, field.attname))


def _name_as_stored(context: dict[str, Any], obj: Any) -> None:
    """Name the object and its inline rows as loaded, not by the input shown again with an error.

    Validation wrote the user's input into the instances that Django's
    heading, breadcrumbs and inline row labels print. Nothing is saved once
    the form is shown again, so they get the loaded values back; the inputs
    keep what was sent.
    """
    form = getattr(context.get("adminform"), "form", None)
    loaded = getattr(form, "_concurrency_loaded", None)
    if obj is not None and loaded is not None and loaded.pk == obj.pk:
        _restore(obj, loaded)
        context["subtitle"] = str(obj)
    for inline_admin_formset in context.get("inline_admin_formsets") or ():
        for inline_form in inline_admin_formset.formset.initial_forms:
            loaded = getattr(inline_form, "_concurrency_loaded", None)
            if loaded is not None:
                _restore(inline_form.instance, loaded)


def _refused_message(error: RecordModifiedError, edited: Any = None) -> str:
    """Say why a save was refused, in the words of the form's own early check.

    The change may have landed long before the save, so the message does not
    say when it happened. Another row (an inline's) is not named here: the
    error holds what the user typed into it; its row in the form is marked
    and named as it is stored (``_InlineFormSet``).
    """
    target = error.target
    deleted = error.db_version is None
    if target is None or (
        edited is not None
        and type(target)._meta.concrete_model is type(edited)._meta.concrete_model
        and target.pk == edited.pk
    ):
        return str(ConcurrentForm.default_error_messages["deleted" if deleted else "changed"])
    values = {"names": str(type(target)._meta.verbose_name_plural)}
    if deleted:
        return (
            _(
                "Someone else deleted one of the %(names)s on this page after you opened it, so your changes "
                "were not saved. Reload the page to see the current values, then make your changes again."
            )
            % values
        )
    return (
        _(
            "Someone else changed one of the %(names)s on this page after you opened it, so your changes "
            "were not saved. Reload the page to see the current values, then make your changes again."
        )
        % values
    )


class ConcurrentModelAdmin(  # type: ignore[misc]  # the mixins narrow ModelAdmin's signatures
    LiveNoticeMixin, ConcurrencyActionMixin, ConcurrencyListEditableMixin, admin.ModelAdmin
):
    """A ``ModelAdmin`` for versioned models: change form, inlines, actions and list_editable.

    If you set ``fields`` or ``fieldsets``, include the version field (system
    checks ``concurrency.A001`` and ``concurrency.A002`` say so).
    """

    form = ConcurrentForm
    formfield_overrides = {VersionField: {"widget": VersionWidget}}

    #: The delete page posts the version it showed; a stale confirmation deletes nothing.
    check_concurrent_delete = True

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        if change and hasattr(request, "user") and not self.has_change_permission(request, obj):
            # View-only: no field is editable, the version included.
            kwargs.setdefault("form", forms.ModelForm)
        form = super().get_form(request, obj, change, **kwargs)
        if change and obj is not None and issubclass(form, ConcurrentForm):
            form = type(form.__name__, (_LoadedRowForm, form), {})
        refused = getattr(request, "_concurrency_refused", None)
        if refused is not None:
            form = type(form.__name__, (_RefusedForm, form), {"concurrency_refused": refused})
        return form

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if change and request.method == "POST":
            _name_as_stored(context, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_formsets_with_inlines(self, request: HttpRequest, obj: Any = None) -> Iterator[Any]:
        """Give inlines of versioned models the signed version field (shown as its number).

        Their formsets mark, and name, the rows someone else changed since the
        page was loaded (see ``_InlineFormSet``).
        """
        for inline in self.get_inline_instances(request, obj):
            field = version_field_of(inline.model)
            kwargs: dict[str, Any] = {}
            if field is not None:
                kwargs["widgets"] = {field.name: VersionWidget}
            formset = inline.get_formset(request, obj, **kwargs)
            if field is not None and not issubclass(formset, _InlineFormSet):
                formset = type(formset.__name__, (_InlineFormSet, formset), {"__module__": __name__})
            yield formset, inline

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method != "POST":
            return super().changeform_view(request, object_id, form_url, extra_context)
        if object_id is not None and self._is_gone(request, object_id):
            return self.response_deleted(request, object_id, form_url, extra_context)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except RecordModifiedError as error:
            # The UPDATE (or a checked delete) matched no row after the form had
            # validated. Django's transaction is rolled back.
            return self.response_refused(request, error, object_id, form_url, extra_context)

    def response_refused(
        self,
        request: HttpRequest,
        error: RecordModifiedError,
        object_id: str | None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Answer a change form whose save the database refused after it had validated.

        Show the form again, with the user's input and the reason. Override it
        to answer differently (``ConflictResolutionMixin`` shows its resolution page).
        """
        if object_id is not None and self._is_gone(request, object_id):
            return self.response_deleted(request, object_id, form_url, extra_context)
        request._concurrency_refused = error  # type: ignore[attr-defined]
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _is_gone(self, request: HttpRequest, object_id: str) -> bool:
        """Return whether a change form was posted for an object this user can no longer find.

        "Save as new" and users without change permission take Django's own path.
        """
        if "_saveasnew" in request.POST or not self.has_change_permission(request, None):
            return False
        to_field = request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR))
        if to_field and not self.to_field_allowed(request, to_field):
            return False
        return self.get_object(request, unquote(object_id), to_field) is None

    def _deleted_name(self, request: HttpRequest, object_id: str) -> str | None:
        """Return the name the admin log gave the object when it was deleted.

        ``None`` when it was deleted outside the admin, when it still exists
        and ``get_queryset()`` hides it from this user (such a row gets the
        answer of a row that never existed), or when the form does not carry a
        version signed for it (it was not a page that showed this object).
        """
        field = version_field_of(self.model)
        if field is None or request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR)):
            return None
        from django.contrib.admin.models import DELETION, LogEntry
        from django.contrib.contenttypes.models import ContentType

        model = self.model
        pk_field = model._meta.pk
        try:
            pk = pk_field.to_python(unquote(object_id))
            pk_field.run_validators(pk)
            unsign_version(model._meta.concrete_model, pk, request.POST.get(field.name))
        except (ValidationError, ValueError):
            return None
        using = router.db_for_write(model)
        if model._base_manager.using(using).filter(pk=pk).exists():
            return None
        content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
        entries = LogEntry.objects.filter(content_type=content_type, object_id=str(pk), action_flag=DELETION)
        return entries.order_by("-action_time").values_list("object_repr", flat=True).first()

    def response_deleted(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Answer a change form posted for an object that is gone (deleted while the user edited it).

        Django would redirect to the admin index and drop the input. Show the
        form again instead, with the user's input and the reason; a user who
        may add objects gets a "Save as new" button (Django's own
        ``_saveasnew``, inline rows included) to keep their work as a new object.
        """
        opts = self.opts
        may_add = self.has_add_permission(request)
        fieldsets = self.get_fieldsets(request, None)
        form_class = self.get_form(request, None, change=False, fields=flatten_fieldsets(fieldsets))
        form = form_class(request.POST, request.FILES)
        form.is_valid()
        name = self._deleted_name(request, object_id)
        if name is None:
            message = _(
                "This %(name)s was deleted by someone else while you were editing it, so your changes "
                "were not saved."
            ) % {"name": opts.verbose_name}
        else:
            message = _(
                "%(name)s “%(obj)s” was deleted by someone else while you were editing it, so your "
                "changes were not saved."
            ) % {"name": capfirst(str(opts.verbose_name)), "obj": name}
        if may_add:
            message += " " + _(
                "Your input is kept below: “Save as new” adds it as a new %(verbose_name)s."
            ) % {"verbose_name": opts.verbose_name}
        else:
            message += " " + _("Your input is kept below so that you can copy it.")
        # A message, not a form error: there is nothing in the form to correct.
        self.message_user(request, message, messages.ERROR)
        formsets: list[Any] = []
        inline_instances: list[Any] = []
        if may_add:
            prefixes: dict[str, int] = {}
            for formset_class, inline in self.get_formsets_with_inlines(request):
                prefix = formset_class.get_default_prefix()
                prefixes[prefix] = prefixes.get(prefix, 0) + 1
                if prefixes[prefix] != 1 or not prefix:
                    prefix = f"{prefix}-{prefixes[prefix]}"
                kwargs = self.get_formset_kwargs(request, form.instance, inline, prefix)
                # Rows of the deleted object become new rows, as with "Save as new".
                kwargs["save_as_new"] = True
                formsets.append(formset_class(**kwargs))
                inline_instances.append(inline)
        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),  # type: ignore[arg-type]  # the stubs' fieldsets types disagree
            self.get_prepopulated_fields(request, None) if may_add else {},
            self.get_readonly_fields(request, None) if may_add else flatten_fieldsets(fieldsets),
            model_admin=self,
        )
        media = self.media + admin_form.media
        inline_formsets = self.get_inline_formsets(request, formsets, inline_instances, None)
        for inline_formset in inline_formsets:
            media += inline_formset.media
        context = {
            **self.admin_site.each_context(request),
            "title": _("%(name)s deleted by someone else") % {"name": capfirst(str(opts.verbose_name))},
            "subtitle": None,
            "adminform": admin_form,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": media,
            "inline_admin_formsets": inline_formsets,
            "errors": helpers.AdminErrorList(form, formsets),
            "preserved_filters": self.get_preserved_filters(request),
            "concurrency_may_add": may_add,
            **(extra_context or {}),
        }
        response = self.render_change_form(
            request, context, add=True, change=False, obj=None, form_url=form_url
        )
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            response.context_data["concurrency_change_form"] = select_template(
                response.template_name  # type: ignore[arg-type]  # render_change_form gives names
            )
            response.template_name = "concurrency/change_form_deleted.html"
        response.status_code = 409
        return response

    # -- the delete page ----------------------------------------------------

    def get_delete_confirmation_template(self) -> str:
        """Return the template of the delete page that posts the signed version."""
        if DJANGO_61:
            return "concurrency/delete_confirmation.html"
        return "concurrency/delete_confirmation_52.html"

    @property
    def delete_confirmation_template(self) -> str | None:  # type: ignore[override]
        """Post the signed version from the delete page, so the deletion is checked against it."""
        if self.check_concurrent_delete and version_field_of(self.model) is not None:
            return self.get_delete_confirmation_template()
        return None

    def render_delete_form(self, request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
        obj = context.get("object")
        field = version_field_of(self.model)
        if field is not None and obj is not None and self.check_concurrent_delete:
            context["concurrency_version_name"] = ROW_VERSION_KEY
            context["concurrency_version"] = sign_version(
                self.model._meta.concrete_model, obj.pk, getattr(obj, field.attname)
            )
        return super().render_delete_form(request, context)  # type: ignore[no-any-return]

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """Delete ``obj`` with the version the delete page showed; refuse a stale confirmation.

        ``obj`` was just read through ``get_object()``: a version that differs
        from its own is refused at once; a change that lands after that read
        makes the conditional DELETE match no row. Either way nothing is deleted.
        """
        field = version_field_of(type(obj))
        if (
            field is not None
            and self.check_concurrent_delete
            and request.method == "POST"
            and is_checked(obj)
        ):
            try:
                version = unsign_version(
                    type(obj)._meta.concrete_model, obj.pk, request.POST.get(ROW_VERSION_KEY)
                )
            except ValueError:
                raise _DeleteRefused(obj, stale=False) from None
            if version != getattr(obj, field.attname):
                raise _DeleteRefused(obj, stale=True)
        super().delete_model(request, obj)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)  # type: ignore[no-any-return]
        except _DeleteRefused as refused:
            # Django's transaction is rolled back (its log entry included).
            return self._response_delete_refused(request, object_id, refused.obj, stale=refused.stale)
        except RecordModifiedError as error:
            # The conditional DELETE (of the object, or of a row its deletion
            # cascades to) matched no row: a change landed after the check.
            if error.target is None:
                raise
            return self._response_delete_refused(
                request, object_id, error.target, stale=True, gone=error.db_version is None
            )

    def _response_delete_refused(
        self, request: HttpRequest, object_id: str, obj: Any, *, stale: bool, gone: bool = False
    ) -> HttpResponse:
        opts = self.model._meta
        values = {"name": capfirst(str(type(obj)._meta.verbose_name)), "obj": _describe(obj)}
        if gone:
            message = _("%(name)s %(obj)s was deleted by someone else in the meantime.") % values
        elif stale:
            message = (
                _(
                    "%(name)s %(obj)s was changed by someone else after the delete page was loaded, so it "
                    "was not deleted. Check its current values, and delete it again if you still want to."
                )
                % values
            )
        else:
            message = (
                _(
                    "The confirmation did not carry a valid version of %(name)s %(obj)s, so it was not "
                    "deleted. Open its delete page again."
                )
                % values
            )
        self.message_user(request, message, messages.WARNING if gone else messages.ERROR)
        site = self.admin_site.name
        if not gone and self.has_view_or_change_permission(request):
            # object_id is the URL's own (admin-quoted) form of the pk.
            url = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id], current_app=site
            )
        elif self.has_view_or_change_permission(request):
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=site)
        else:
            url = reverse("admin:index", current_app=site)
        return HttpResponseRedirect(url)

    # -- system checks ------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = super().check(**kwargs)
        field = version_field_of(self.model)
        if field is not None:
            errors.extend(self._checkversion_field_of(field))
        return errors

    def _checkversion_field_of(self, field: VersionField) -> list[checks.CheckMessage]:
        name = field.name
        label = f"{type(self).__module__}.{type(self).__qualname__}"
        problems: list[checks.CheckMessage] = []
        if name in (self.exclude or ()) or name in (self.readonly_fields or ()):
            problems.append(
                checks.Error(
                    f"{label} excludes the version field {name!r} of {self.model._meta.label} from its form.",
                    hint=f"Remove {name!r} from 'exclude' and 'readonly_fields'.",
                    obj=type(self),
                    id="concurrency.A001",
                )
            )
        fieldsets = self._declared_fieldsets()
        if fieldsets is None:
            return problems
        source, declared = fieldsets
        if name not in flatten_fieldsets(declared):
            which = "fieldsets" if source == "fieldsets" else "fields"
            problems.append(
                checks.Error(
                    f"{label} leaves the version field {name!r} of {self.model._meta.label} out of its "
                    f"'{which}', so its saves could not be checked.",
                    hint=f"Add {name!r} to '{which}'.",
                    obj=type(self),
                    id="concurrency.A002" if which == "fieldsets" else "concurrency.A001",
                )
            )
        return problems

    def _declared_fieldsets(self) -> tuple[str, Any] | None:
        """Return the fieldsets the change form will use, or ``None`` if Django derives them."""
        overridden = type(self).get_fieldsets is not admin.ModelAdmin.get_fieldsets or (
            type(self).get_fields is not admin.ModelAdmin.get_fields
        )
        if overridden:
            try:
                declared = self.get_fieldsets(_check_request(), None)
            except Exception:
                # A get_fieldsets() that needs a real request cannot be checked
                # here; ConcurrentForm refuses to work without the field.
                return None
            source = (
                "fieldsets" if type(self).get_fieldsets is not admin.ModelAdmin.get_fieldsets else "fields"
            )
            return source, declared
        if self.fieldsets:
            return "fieldsets", self.fieldsets
        if self.fields:
            return "fields", [(None, {"fields": self.fields})]
        return None


class _DeleteRefused(Exception):  # noqa: N818 - internal signal, never leaves delete_view
    """A delete confirmation whose version is stale (or missing, or not valid)."""

    def __init__(self, obj: Any, *, stale: bool) -> None:
        super().__init__(obj)
        self.obj = obj
        self.stale = stale


def _check_inlines(model_admin: admin.ModelAdmin) -> list[checks.CheckMessage]:
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


def _check_request() -> HttpRequest:
    from django.contrib.auth.models import AnonymousUser

    request = HttpRequest()
    request.user = AnonymousUser()
    return request
