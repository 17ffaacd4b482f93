"""Actions on selected rows: each checkbox carries ``pk,version``; a stale selection runs nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import connections, models, router
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .._bases import ModelAdminBase
from ..compat import DJANGO_61
from ..core.options import version_field_of
from ..fields import VersionField
from ..templatetags.concurrency import identity
from .common import NAMED_ROWS, row_names

if TYPE_CHECKING:
    from django.db.models import QuerySet


# ---------------------------------------------------------------------------
# Actions


class ConcurrencyActionMixin(ModelAdminBase):
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
    def delete_selected_confirmation_template(self) -> str | None:  # type: ignore[override]
        """Post ``pk,version`` from the confirmation page, so the deletion is checked too."""
        return self.get_confirmation_template() if self.check_concurrent_action else None

    def action_checkbox(self, obj: Any) -> SafeString:
        """Render the row's checkbox with ``"<pk>,<version>"`` as its value."""
        field = version_field_of(type(obj))
        if field is None or not self.check_concurrent_action:
            return super().action_checkbox(obj)
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
            return super().response_action(request, queryset, *args, **kwargs)
        field = version_field_of(queryset.model)
        values = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if field is None or not values or not self.check_concurrent_action:
            return super().response_action(request, queryset, *args, **kwargs)
        selection = self._parse_selection(request, queryset.model, values)
        if selection is None:
            return None
        using = router.db_for_write(queryset.model)
        if not self._selection_is_current(request, queryset, field, selection, using):
            return None
        original = request.POST
        stripped = request.POST.copy()
        stripped.setlist(helpers.ACTION_CHECKBOX_NAME, list(dict.fromkeys(pk for pk, _v in selection)))
        request.POST = stripped  # type: ignore[assignment]
        try:
            return super().response_action(request, queryset, *args, **kwargs)
        finally:
            request.POST = original

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
                self.message_user(
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
        found = {obj.pk: obj for obj in self._visible(request, using).filter(pk__in=stale[: NAMED_ROWS + 1])}
        named = [found.get(pk, f"{model._meta.pk.name}={pk}") for pk in stale]
        self.message_user(
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
            % {"names": row_names(named)},
            messages.ERROR,
        )
        return False

    def _visible(self, request: HttpRequest, using: str) -> QuerySet:
        """Return the rows this user may see in this admin: ``get_queryset()``, on ``using``."""
        return self.get_queryset(request).using(using)
