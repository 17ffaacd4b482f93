"""Forms that carry a record's version through the browser and back.

The version travels as a hidden, signed value. The signature names the model
and the primary key (see :mod:`concurrency.signing`), so a value cannot be
forged, and a value issued for one row cannot be replayed on another. Any
bad value is an ordinary validation error.

``ConcurrentForm.clean()`` compares the submitted version with the database to
tell the user early that someone else changed the record. It is feedback, not
the guard: the save is still the conditional UPDATE of ``concurrency.core``,
made with the version the user submitted, so a change that lands between
``clean()`` and ``save()`` still raises ``RecordModifiedError``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.forms.boundfield import BoundField
from django.utils.translation import gettext_lazy as _

from .conf import conf
from .core.options import is_checked, options, options_of
from .core.versions import current_version
from .exceptions import VersionChangedError
from .signing import VersionFieldSigner, get_signer, sign_version, unsign_version

__all__ = [
    "ConcurrentForm",
    "SignedValue",
    "VersionField",
    "VersionFieldSigner",
    "VersionWidget",
    "get_signer",
]


class SignedValue(str):
    """A version as sent to the browser; ``version`` is the plain number when known."""

    version: Any = None

    def __new__(cls, value: Any, version: Any = None) -> SignedValue:
        obj = super().__new__(cls, "" if value is None else value)
        obj.version = version
        return obj


class VersionWidget(forms.Widget):
    """Send the version as a hidden input and show the revision number next to it.

    ``VersionField`` uses ``HiddenInput``, which hides the whole row (label
    included) in the admin; choose this widget, through ``Meta.widgets`` or
    ``formfield_overrides``, to display the number the user is editing.
    """

    template_name = "concurrency/widgets/version.html"

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        shown = getattr(value, "version", None)
        if shown is None and not isinstance(value, SignedValue):
            shown = value
        context["widget"]["version"] = "" if shown is None else shown
        return context


class VersionField(forms.Field):
    """The form field of a version: hidden, signed, and bound to the form's instance.

    It cleans to the version as an ``int`` for an existing row, and to
    ``None`` for a new one (the database gives new rows their first version;
    a submitted value, such as the one "Save as new" carries over from the
    original row, is ignored). For an existing row a missing, malformed,
    forged or replayed value is a validation error with code ``missing`` or
    ``invalid``.

    ``signer`` replaces the signer for this field: any object with
    ``sign(value)`` and ``unsign(value)``, used as it is (it is not bound to
    the row the way the default ``CONCURRENCY_FIELD_SIGNER`` is).
    """

    widget = forms.HiddenInput
    default_error_messages = {
        "missing": _(
            "The version of this record is missing from the form. "
            "Reload the page and make your changes again."
        ),
        "invalid": _(
            "The version of this record in the form is not valid (it was altered, or belongs to another "
            "record). Reload the page and make your changes again."
        ),
    }

    def __init__(self, *args: Any, signer: Any = None, **kwargs: Any) -> None:
        if signer is not None and (
            isinstance(signer, type)
            or not callable(getattr(signer, "sign", None))
            or not callable(getattr(signer, "unsign", None))
        ):
            raise TypeError(
                f"VersionField(signer={signer!r}): pass an object with sign() and unsign() methods "
                "(an instance, not a class)."
            )
        self.signer = signer
        # Options that IntegerField-style callers pass and that mean nothing here.
        for option in ("min_value", "max_value", "step_size", "localize"):
            kwargs.pop(option, None)
        # Whether a version is needed depends on the instance, not on the
        # model field's ``blank``; ``clean()`` decides.
        kwargs["required"] = False
        super().__init__(*args, **kwargs)
        self.instance: models.Model | None = None

    def get_bound_field(self, form: forms.BaseForm, field_name: str) -> BoundField:
        # Each form has its own deep copy of its fields, so this binds the
        # field to one form's instance only.
        instance = getattr(form, "instance", None)
        if isinstance(instance, models.Model):
            self.instance = instance
        return super().get_bound_field(form, field_name)

    def _is_new(self) -> bool:
        instance = self.instance
        return instance is not None and (instance._state.adding or instance.pk is None)

    def _row(self) -> tuple[Any, Any]:
        """Return the model and the primary key the signature is bound to."""
        instance = self.instance
        if instance is None:
            return None, None
        return instance._meta.concrete_model, None if self._is_new() else instance.pk

    def _sign(self, version: Any) -> str:
        return sign_version(*self._row(), version, signer=self.signer)

    def _unsign(self, value: Any) -> int:
        return unsign_version(*self._row(), value, signer=self.signer)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, SignedValue):
            return value
        # A new row has no version yet (the model's default is not one): show none.
        if value is None or value == "" or self._is_new():
            return SignedValue("")
        return SignedValue(self._sign(value), version=value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        # Re-display exactly what was posted: a form shown again after an
        # error must not be upgraded to a version the user never saw.
        if data is None or data == "":
            return SignedValue("")
        try:
            version: int | None = self._unsign(data)
        except ValueError:
            version = None
        return SignedValue(str(data), version=version)

    def clean(self, value: Any) -> int | None:
        if self._is_new():
            return None
        if value is None or str(value).strip() == "":
            raise ValidationError(self.error_messages["missing"], code="missing")
        try:
            return self._unsign(value)
        except ValueError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        # The version is not something the user edits: it never makes a form
        # "changed" (admin change messages, formsets skipping untouched rows).
        return False


class ConcurrentForm(forms.ModelForm):
    """A ModelForm that refuses stale and forged submissions of a versioned model.

    ``is_valid()`` is False, with a non-field error, when the version in the
    form is missing, invalid, or older than the database's (one query). The
    save is the conditional UPDATE with the submitted version, so a change made
    between ``clean()`` and ``save()`` still raises ``RecordModifiedError``:
    catch it in the view, or install ``ConcurrencyMiddleware``.

    The version field must be among the form's fields; otherwise creating the
    form raises ``ImproperlyConfigured`` rather than silently saving without a
    check. On a model without a version field it is a plain ModelForm.
    """

    default_error_messages = {
        "changed": _(
            "Someone else changed this record after you opened it, so your changes were not saved. "
            "Reload the page to see the current values, then make your changes again."
        ),
        "deleted": _("Someone else deleted this record after you opened it, so your changes were not saved."),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name = self._version_field_name()
        if name is not None and name not in self.fields:
            raise ImproperlyConfigured(
                f"{type(self).__qualname__} edits {self._meta.model._meta.label}, whose version field "
                f"{name!r} is not among the form's fields, so saves could not be checked. Add {name!r} to "
                "Meta.fields (or remove it from Meta.exclude)."
            )

    def _version_field_name(self) -> str | None:
        meta = options_of(self._meta.model)
        return None if meta is None else meta.field.name

    def _is_existing(self) -> bool:
        return not self.instance._state.adding and self.instance.pk is not None

    def clean(self) -> dict[str, Any] | None:
        cleaned_data = super().clean()
        name = self._version_field_name()
        if name is None:
            return cleaned_data
        if name in self.errors:
            # The field is hidden: say what is wrong where the user will see it.
            errors = self.errors.pop(name)
            self.add_error(None, ValidationError(errors.as_data()))
        elif name in self.cleaned_data and self._is_existing():
            self._check_current(self.cleaned_data[name])
        return cleaned_data

    def _check_current(self, version: Any) -> None:
        """Add a non-field error if the row no longer has ``version`` (one query)."""
        instance = self.instance
        if not is_checked(instance) or not (version or conf.VERSION_FIELD_REQUIRED):
            return
        current = self._current_version()
        if not current:
            self.add_error(None, VersionChangedError(self.default_error_messages["deleted"], code="deleted"))
        elif current[0] != version:
            self.add_error(None, VersionChangedError(self.default_error_messages["changed"], code="changed"))

    def _current_version(self) -> list[Any]:
        """Return ``[version]`` of the row as the database holds it now, ``[]`` if it is gone."""
        # Where the save will go: not a replica the instance may have been read from.
        return current_version(self.instance)

    def save(self, commit: bool = True) -> Any:
        """Save with the version the user submitted, so the UPDATE is checked against it.

        Like ``ModelForm.save()``, validate first if ``is_valid()`` was not
        called, and raise ``ValueError`` for a form with errors (a stale or
        forged version included).
        """
        name = self._version_field_name()
        if self.errors:
            # ModelForm.save() raises its "didn't validate" ValueError.
            return super().save(commit=commit)
        if name is not None and self._is_existing() and self.cleaned_data.get(name) is not None:
            attname = options(self.instance).field.attname
            setattr(self.instance, attname, self.cleaned_data[name])
        return super().save(commit=commit)
