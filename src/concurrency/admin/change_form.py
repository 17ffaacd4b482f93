"""The change form's parts: the early check against the loaded row, inline rows, the refused save."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from django import forms
from django.db import models
from django.utils.translation import gettext as _

from ..core.options import is_checked, options, version_field_of
from ..exceptions import RecordModifiedError
from ..forms import ConcurrentForm
from .common import describe

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------------------
# The ModelAdmin


class LoadedRowForm(ConcurrentForm):
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


class InlineFormSet(forms.BaseModelFormSet):
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
            vars(form)["_concurrency_loaded"] = copy.copy(instance)

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
                % {"name": loaded._meta.verbose_name, "obj": describe(loaded)},
            )


class RefusedForm(forms.BaseForm):
    """Marks the change form of a request whose save the database refused."""

    concurrency_refused: RecordModifiedError

    def clean(self) -> dict[str, Any] | None:
        cleaned_data = super().clean()
        if not self.errors:
            self.add_error(None, refused_message(self.concurrency_refused, getattr(self, "instance", None)))
        return cleaned_data


def _restore(instance: models.Model, loaded: models.Model) -> None:
    for field in loaded._meta.concrete_fields:
        setattr(instance, field.attname, getattr(loaded, field.attname))


def name_as_stored(context: dict[str, Any], obj: Any) -> None:
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


def refused_message(error: RecordModifiedError, edited: Any = None) -> str:
    """Say why a save was refused, in the words of the form's own early check.

    The change may have landed long before the save, so the message does not
    say when it happened. Another row (an inline's) is not named here: the
    error holds what the user typed into it; its row in the form is marked
    and named as it is stored (``InlineFormSet``).
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
