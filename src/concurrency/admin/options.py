"""``ConcurrentModelAdmin``: the change form, inlines, the delete page, actions and list_editable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import TO_FIELD_VAR
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core import checks
from django.core.exceptions import ValidationError
from django.db import router
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import select_template
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from ..compat import DJANGO_61
from ..core.options import is_checked, version_field_of
from ..exceptions import RecordModifiedError
from ..fields import VersionField
from ..forms import ConcurrentForm, VersionWidget
from ..live import LiveNoticeMixin
from ..signing import sign_version, unsign_version
from .actions import ConcurrencyActionMixin
from .change_form import InlineFormSet, LoadedRowForm, RefusedForm, name_as_stored
from .checks import check_request
from .common import ROW_VERSION_KEY, describe
from .list_editable import ConcurrencyListEditableMixin

if TYPE_CHECKING:
    pass


class ConcurrentModelAdmin(  # the mixins narrow ModelAdmin's signatures
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
            form = type(form.__name__, (LoadedRowForm, form), {})
        refused = getattr(request, "_concurrency_refused", None)
        if refused is not None:
            form = type(form.__name__, (RefusedForm, form), {"concurrency_refused": refused})
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
            name_as_stored(context, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_formsets_with_inlines(self, request: HttpRequest, obj: Any = None) -> Iterator[Any]:
        """Give inlines of versioned models the signed version field (shown as its number).

        Their formsets mark, and name, the rows someone else changed since the
        page was loaded (see ``InlineFormSet``).
        """
        for inline in self.get_inline_instances(request, obj):
            field = version_field_of(inline.model)
            kwargs: dict[str, Any] = {}
            if field is not None:
                kwargs["widgets"] = {field.name: VersionWidget}
            formset = inline.get_formset(request, obj, **kwargs)
            if field is not None and not issubclass(formset, InlineFormSet):
                formset = type(formset.__name__, (InlineFormSet, formset), {"__module__": __name__})
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
        vars(request)["_concurrency_refused"] = error
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
        return super().render_delete_form(request, context)

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
            return super().delete_view(request, object_id, extra_context)
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
        values = {"name": capfirst(str(type(obj)._meta.verbose_name)), "obj": describe(obj)}
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
                declared = self.get_fieldsets(check_request(), None)
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
