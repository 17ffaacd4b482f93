"""The three-way comparison of a row: base, mine, theirs; and who changed the row since."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from ..core.options import options
from .snapshot import (
    CHANGED,
    CHOICE_PREFIX,
    CONFLICT,
    DELETED,
    MINE,
    SAME,
    THEIRS,
    UNCHANGED,
    Items,
    as_query,
    items_of,
    keys_of,
    merged_fields,
)

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
    #: The name of the radio buttons that choose a side, when the user must choose.
    choice: str = ""
    #: The side chosen on a page submitted before (``"mine"``, ``"theirs"`` or ``None``).
    chosen: str | None = None

    @property
    def conflict(self) -> bool:
        return self.status == CONFLICT

    @property
    def merged(self) -> str | None:
        """Return the side taken automatically, or ``None`` when the user must choose."""
        return {UNCHANGED: MINE, MINE: MINE, SAME: MINE, THEIRS: THEIRS}.get(self.status)

    @property
    def taken(self) -> str | None:
        """Return the side that will be saved: the one taken automatically, or the one chosen."""
        return self.merged or self.chosen


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


@dataclass
class RowMerge:
    """One inline row in a three-way comparison.

    ``change`` says what happened to the row (``"changed"``, ``"added"`` or
    ``"deleted"``) and ``status`` who did it, as for a field. A row one side
    deleted and the other changed is a conflict of the whole row: ``choice``
    names its radio buttons (keep mine: deleted, or added again as a new row;
    take theirs). A row both changed has its conflicts field by field.
    """

    prefix: str
    key: str
    label: str
    change: str
    status: str
    fields: list[FieldMerge]
    base: Items | None
    mine: Items | None
    theirs: Items | None
    choice: str = ""
    chosen: str | None = None

    @property
    def conflict(self) -> bool:
        """Return whether the whole row needs a choice (deleted by one side, changed by the other)."""
        return self.status == CONFLICT and self.change != CHANGED

    @property
    def shown_fields(self) -> list[FieldMerge]:
        """Return the fields the page lists: those that differ, or all of an added or deleted row."""
        if self.change == CHANGED:
            return [f for f in self.fields if f.status != UNCHANGED]
        return self.fields

    @property
    def deleted_by(self) -> str | None:
        """Return the side that deleted the row: ``"mine"``, ``"theirs"``, ``"same"`` (both) or ``None``."""
        if self.change != DELETED:
            return None
        if self.mine is None and self.theirs is None:
            return SAME
        return MINE if self.mine is None else THEIRS

    @property
    def conflicts(self) -> list[str]:
        """Return the names of the choices this row needs."""
        if self.conflict:
            return [self.choice]
        return [f.choice for f in self.fields if f.conflict]


@dataclass
class InlineMerge:
    """The rows of one inline formset in a three-way comparison."""

    prefix: str
    label: str
    rows: list[RowMerge]
    formset: forms.BaseFormSet

    @property
    def shown(self) -> list[RowMerge]:
        """Return the rows that differ on some side."""
        return [row for row in self.rows if row.status != UNCHANGED]


def normal(bound: forms.BoundField, data: QueryDict) -> Any:
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


def display(bound: forms.BoundField, data: QueryDict) -> str:
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


def _status(base: Any, mine: Any, theirs: Any) -> str:
    if mine == theirs:
        return UNCHANGED if mine == base else SAME
    if mine == base:
        return THEIRS
    if theirs == base:
        return MINE
    return CONFLICT


def compare(
    bound: forms.BoundField, base: QueryDict | None, mine: QueryDict | None, theirs: QueryDict | None
) -> FieldMerge:
    """Compare one field across three sides; a side that is ``None`` has no row (not added, or deleted)."""
    b, m, t = (None if d is None else normal(bound, d) for d in (base, mine, theirs))
    absent = "—" if base is None else str(_("(deleted)"))
    return FieldMerge(
        name=bound.name,
        label=str(bound.label),
        base=absent if base is None else display(bound, base),
        mine=absent if mine is None else display(bound, mine),
        theirs=absent if theirs is None else display(bound, theirs),
        status=_status(b, m, t),
        mine_items=[] if mine is None else [(k, v) for k in keys_of(bound) for v in mine.getlist(k)],
        theirs_items=[] if theirs is None else [(k, v) for k in keys_of(bound) for v in theirs.getlist(k)],
    )


def three_way(
    form_class: type[forms.BaseModelForm],
    instance: models.Model,
    base: QueryDict,
    mine: QueryDict,
    theirs: QueryDict | None = None,
) -> Merge:
    """Compare what the user started from (``base``) and entered (``mine``) with ``instance``, the row now.

    ``base`` and ``mine`` are POST data of ``form_class``; ``instance`` is
    freshly read from the database. ``theirs``, POST data too, replaces the
    values of ``instance`` when given.
    """
    current = form_class(instance=instance)
    if theirs is None:
        theirs = as_query(item for bound in merged_fields(current) for item in items_of(bound, bound.value()))
    merges = []
    for bound in merged_fields(current):
        merge = compare(bound, base, mine, theirs)
        merge.choice = CHOICE_PREFIX + bound.name
        merges.append(merge)
    version_name = options(instance).field.name
    version_items: Items = []
    if version_name in current.fields:
        version_items = items_of(current[version_name], current[version_name].value())
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


@dataclass
class Page:
    """What a resolution page shows and carries."""

    merge: Merge
    inlines: list[InlineMerge]
    #: When the user opened the form they started from.
    shown: datetime
    #: The signed snapshot the user started from (the base).
    started: str
    #: What the user entered: their change form's POST, or the merge of an earlier page.
    mine: Items
    #: The signed snapshot of what the page shows as "now", and its version.
    theirs: str | None = None
    version: Any = None

    @property
    def choices(self) -> list[str]:
        """Return the names of the choices the user must make."""
        rows = [name for inline in self.inlines for row in inline.rows for name in row.conflicts]
        return [f.choice for f in self.merge.conflicts] + rows

    def choose(self, chosen: dict[str, str]) -> None:
        """Record the sides chosen on a submitted page."""
        for f in self.merge.fields:
            f.chosen = chosen.get(f.choice) if f.conflict else None
        for inline in self.inlines:
            for row in inline.rows:
                row.chosen = chosen.get(row.choice) if row.conflict else None
                for f in row.fields:
                    if row.change != CHANGED:
                        f.chosen = row.chosen
                    else:
                        f.chosen = chosen.get(f.choice) if f.conflict else None
