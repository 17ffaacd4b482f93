"""Resolve a refused admin change field by field: what you started from, what you entered, what is there now.

When a change form is submitted against a version that is no longer current,
``ConflictResolutionMixin`` shows a three-way comparison instead of a bare
error. Fields only one side changed are merged automatically; for fields both
sides changed the user picks "keep mine" or "take theirs", then saves against
the version they were just shown (a plain compare-and-swap: if the row moves
again, the page comes back with the newer values)::

    class ArticleAdmin(ConflictResolutionMixin, ConcurrentModelAdmin):
        ...

Inline rows are compared the same way, row by row and field by field, rows
added or deleted by either side included.

The value the user started from (the *base*) travels with the form as a
signed snapshot in a hidden field, together with the version, the inline rows
and the time the form was shown; who changed the row since is read from the
admin log. The resolution page carries, signed, what the user had entered and
the snapshot they started from, so what it saves is rebuilt on the server from
those and the user's choices, never from values posted back by the browser.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.formsets import DELETION_FIELD_NAME, ORDERING_FIELD_NAME
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from .core.options import options, options_of
from .exceptions import RecordModifiedError
from .signing import dumps_for_row, loads_for_row

__all__ = [
    "BASE_FIELD",
    "ConflictResolutionMixin",
    "FieldMerge",
    "InlineMerge",
    "Merge",
    "RowMerge",
    "changed_by",
    "three_way",
]

BASE_FIELD = "_concurrency_base"
RESOLVE_FIELD = "_concurrency_resolve"
STATE_FIELD = "_concurrency_state"
CHOICE_PREFIX = "_concurrency_choice-"
# Sent by resolution pages of earlier releases; still recognised, and refused.
MINE_PREFIX = "_concurrency_mine-"
THEIRS_PREFIX = "_concurrency_theirs-"

#: Statuses of a field in a three-way comparison.
UNCHANGED, MINE, THEIRS, SAME, CONFLICT = "unchanged", "mine", "theirs", "same", "conflict"
#: The status of an inline row whose fields were changed, some by one side and some by the other.
MERGED = "merged"
#: What happened to an inline row.
CHANGED, ADDED, DELETED = "changed", "added", "deleted"

Items = list[tuple[str, str]]
#: Inline rows of a snapshot: formset prefix -> [(pk, items keyed without the form prefix), ...].
Rows = dict[str, list[tuple[str, Items]]]

# Keys of a change-form POST that are buttons, never data.
_BUTTONS = ("_save", "_continue", "_addanother", "_saveasnew")


# -- The snapshot of what the form showed -------------------------------------


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


def _merged_fields(form: forms.BaseForm, exclude: Iterable[str] = ()) -> list[forms.BoundField]:
    """Return the fields a three-way merge covers: visible, editable, not files."""
    version = options_of(form._meta.model)  # type: ignore[attr-defined]
    version_name = version.field.name if version is not None else None
    skip = {BASE_FIELD, version_name, *exclude}
    return [
        form[name]
        for name, f in form.fields.items()
        if name not in skip and not f.disabled and not isinstance(f.widget, forms.FileInput)
    ]


def _row_items(form: forms.BaseForm) -> Items:
    """Return an unbound inline form's values as POST items, keyed without the form's prefix."""
    cut = len(form.prefix or "") + 1
    items: Items = []
    for name in form.fields:
        if name in (DELETION_FIELD_NAME, ORDERING_FIELD_NAME):
            continue
        bound = form[name]
        items += [(key[cut:], value) for key, value in _items(bound, bound.value())]
    return items


def _rows(formsets: Iterable[forms.BaseFormSet]) -> Rows:
    """Return the rows the inline formsets show: each initial form's pk and values."""
    return {
        str(formset.prefix): [(str(form.instance.pk), _row_items(form)) for form in formset.initial_forms]  # type: ignore[attr-defined]
        for formset in formsets
    }


def snapshot(form: forms.BaseModelForm, formsets: Iterable[forms.BaseFormSet] = ()) -> str:
    """Return the signed snapshot of an unbound change form and its inline formsets.

    It holds the version, every field's value and every inline row's values.
    """
    instance = form.instance
    items: Items = []
    for bound in _merged_fields(form):
        items += _items(bound, bound.value())
    version = getattr(instance, options(instance).field.attname)
    rows = {prefix: [[pk, row] for pk, row in shown] for prefix, shown in _rows(formsets).items()}
    payload = {"v": version, "t": int(time.time()), "d": items, "i": rows}
    model: Any = type(instance)._meta.concrete_model
    return dumps_for_row(payload, "resolution", model, instance.pk)


@dataclass
class _Snapshot:
    version: Any
    shown: datetime
    data: QueryDict
    rows: Rows
    value: str


def _pairs(value: Any) -> Items:
    if not isinstance(value, list):
        raise TypeError(value)
    pairs: Items = []
    for pair in value:
        key, item = pair
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(pair)
        pairs.append((key, item))
    return pairs


def _query(items: Iterable[tuple[str, str]]) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, item in items:
        data.appendlist(key, item)
    return data


def _read_snapshot(model: type[models.Model], pk: Any, value: Any) -> _Snapshot:
    """Return a snapshot; ``ValueError`` if it is forged, broken or from an earlier release."""
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        payload = loads_for_row(value, "resolution", model, pk)
        rows: Rows = {}
        for prefix, shown in payload["i"].items():
            rows[str(prefix)] = [(str(row_pk), _pairs(row)) for row_pk, row in shown]
        shown_at = datetime.fromtimestamp(int(payload["t"]), tz=UTC)
        return _Snapshot(payload["v"], shown_at, _query(_pairs(payload["d"])), rows, value)
    except (signing.BadSignature, AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError("invalid conflict snapshot") from exc


def read_snapshot(model: type[models.Model], pk: Any, value: str) -> tuple[Any, datetime, QueryDict]:
    """Return the version, the time and the data of a snapshot; ``ValueError`` if it is forged or broken."""
    shot = _read_snapshot(model, pk, value)
    return shot.version, shot.shown, shot.data


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
        if not self.is_bound and not self.instance._state.adding and options_of(self.instance) is not None:
            self.fields[BASE_FIELD].initial = snapshot(self)


# -- The state of a resolution page -------------------------------------------


@dataclass
class _State:
    """What a resolution page carries, signed: the version it shows, the start, what the user entered."""

    version: Any
    started: str
    mine: Items


def _sign_state(model: Any, pk: Any, state: _State) -> str:
    payload = {"v": state.version, "s": state.started, "m": state.mine}
    return dumps_for_row(payload, "resolution.state", model, pk)


def _read_state(model: Any, pk: Any, value: Any) -> _State:
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        payload = loads_for_row(value, "resolution.state", model, pk)
        started = payload["s"]
        if not isinstance(started, str):
            raise TypeError(started)
        return _State(payload["v"], started, _pairs(payload["m"]))
    except (signing.BadSignature, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError("invalid resolution state") from exc


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


def _status(base: Any, mine: Any, theirs: Any) -> str:
    if mine == theirs:
        return UNCHANGED if mine == base else SAME
    if mine == base:
        return THEIRS
    if theirs == base:
        return MINE
    return CONFLICT


def _compare(
    bound: forms.BoundField, base: QueryDict | None, mine: QueryDict | None, theirs: QueryDict | None
) -> FieldMerge:
    """Compare one field across three sides; a side that is ``None`` has no row (not added, or deleted)."""
    b, m, t = (None if d is None else _normal(bound, d) for d in (base, mine, theirs))
    absent = "—" if base is None else str(_("(deleted)"))
    return FieldMerge(
        name=bound.name,
        label=str(bound.label),
        base=absent if base is None else _display(bound, base),
        mine=absent if mine is None else _display(bound, mine),
        theirs=absent if theirs is None else _display(bound, theirs),
        status=_status(b, m, t),
        mine_items=[] if mine is None else [(k, v) for k in _keys(bound) for v in mine.getlist(k)],
        theirs_items=[] if theirs is None else [(k, v) for k in _keys(bound) for v in theirs.getlist(k)],
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
        theirs = _query(item for bound in _merged_fields(current) for item in _items(bound, bound.value()))
    merges = []
    for bound in _merged_fields(current):
        merge = _compare(bound, base, mine, theirs)
        merge.choice = CHOICE_PREFIX + bound.name
        merges.append(merge)
    version_name = options(instance).field.name
    version_items: Items = []
    if version_name in current.fields:
        version_items = _items(current[version_name], current[version_name].value())
    return Merge(merges, instance, version_items)


class _Malformed(ValueError):  # noqa: N818 - internal signal, never leaves the mixin
    """Inline formset data that no change form sends."""


def _local(prefix: str, data: Any) -> Items:
    """Return the items of ``data`` under ``prefix-``, keyed without it."""
    cut = len(prefix) + 1
    return [(key[cut:], value) for key in data if key.startswith(prefix + "-") for value in data.getlist(key)]


def _posted_rows(
    formset: forms.BaseFormSet, base: Sequence[str]
) -> tuple[dict[str, Items | None], list[Items]]:
    """Return the rows a bound inline formset posts: ``{pk: items, or None if deleted}`` and the added rows.

    Every row of ``base`` must be posted once, and no other existing row.
    """
    management = formset.management_form
    if not management.is_valid():
        raise _Malformed("management form")
    initial, total = formset.initial_form_count(), formset.total_form_count()
    if initial != len(base) or total < initial:
        raise _Malformed("form counts")
    model: Any = formset.model  # type: ignore[attr-defined]
    pk_name = model._meta.pk.name
    to_python = model._meta.pk.to_python
    deleting = bool(formset.can_delete)
    template = formset.empty_form
    delete = template.fields.get(DELETION_FIELD_NAME) if deleting else None
    rows: dict[str, Items | None] = {}
    for index in range(initial):
        prefix = formset.add_prefix(index)
        try:
            pk = str(to_python(formset.data.get(f"{prefix}-{pk_name}")))
        except ValidationError as exc:
            raise _Malformed("pk") from exc
        if pk not in base or pk in rows:
            raise _Malformed("pk")
        items = [(k, v) for k, v in _local(prefix, formset.data) if k != DELETION_FIELD_NAME]
        gone = delete is not None and bool(
            delete.clean(
                delete.widget.value_from_datadict(formset.data, {}, f"{prefix}-{DELETION_FIELD_NAME}")
            )
        )
        rows[pk] = None if gone else items
    added: list[Items] = []
    for index in range(initial, total):
        form = formset.forms[index]
        prefix = formset.add_prefix(index)
        gone = delete is not None and bool(
            delete.clean(
                delete.widget.value_from_datadict(formset.data, {}, f"{prefix}-{DELETION_FIELD_NAME}")
            )
        )
        if gone or not form.has_changed():
            continue
        added.append([(k, v) for k, v in _local(prefix, formset.data) if k != DELETION_FIELD_NAME])
    return rows, added


def _excluded(formset: forms.BaseFormSet) -> set[str]:
    """Return the inline form's fields that are bookkeeping: the pk, the parent key, DELETE, ORDER."""
    model: Any = formset.model  # type: ignore[attr-defined]
    names = {model._meta.pk.name, DELETION_FIELD_NAME, ORDERING_FIELD_NAME}
    fk = getattr(formset, "fk", None)
    if fk is not None:
        names.add(fk.name)
    return names


def _inline_three_way(
    formset: forms.BaseFormSet,
    mine: forms.BaseFormSet,
    base: list[tuple[str, Items]],
    theirs: list[tuple[str, Items]],
    label: str,
) -> InlineMerge:
    """Compare the rows of one inline: started from (``base``), posted (``mine``, bound) and now (``theirs``).

    ``formset`` is unbound, for the current rows: its empty form reads values
    and its instances name the rows. ``_Malformed`` if ``mine`` is not what
    the change form posts.
    """
    template = formset.empty_form
    prefix = str(formset.prefix)
    fields = _merged_fields(template, _excluded(formset))
    posted, added = _posted_rows(mine, [pk for pk, _row in base])
    current = {str(form.instance.pk): form.instance for form in formset.initial_forms}  # type: ignore[attr-defined]
    theirs_rows = dict(theirs)
    base_rows = dict(base)

    def data(items: Items | None) -> QueryDict | None:
        if items is None:
            return None
        return _query((f"{template.prefix}-{k}", v) for k, v in items)

    def same(one: Items | None, other: Items | None) -> bool:
        a, b = data(one), data(other)
        return all(_normal(bound, a) == _normal(bound, b) for bound in fields)  # type: ignore[arg-type]

    def name(pk: str | None, *sides: Items | None) -> str:
        if pk is not None and pk in current:
            return str(current[pk])
        for items in sides:
            if items is not None and fields:
                return _display(fields[0], data(items))  # type: ignore[arg-type]
        return str(_("New row"))

    rows: list[RowMerge] = []
    keys = [pk for pk, _row in base] + [pk for pk, _row in theirs if pk not in base_rows]
    for pk in keys:
        b, m, t = base_rows.get(pk), posted.get(pk), theirs_rows.get(pk)
        in_base = pk in base_rows
        if in_base and m is not None and t is not None:
            change, status = CHANGED, UNCHANGED
        elif not in_base:
            change, status = ADDED, THEIRS
        elif m is None and t is None:
            change, status = DELETED, SAME
        elif m is None:
            change, status = DELETED, (MINE if same(b, t) else CONFLICT)
        else:
            change, status = DELETED, (THEIRS if same(b, m) else CONFLICT)
        row_id = f"{prefix}.{pk}"
        merges = []
        for bound in fields:
            merge = _compare(bound, data(b), data(m), data(t))
            merge.choice = f"{CHOICE_PREFIX}{row_id}.{bound.name}"
            merges.append(merge)
        if change == CHANGED:
            status = _row_status({f.status for f in merges})
        else:
            _whole_row(merges, status, CHOICE_PREFIX + row_id)
        rows.append(
            RowMerge(
                prefix, pk, name(pk, t, b, m), change, status, merges, b, m, t, choice=CHOICE_PREFIX + row_id
            )
        )
    for number, items in enumerate(added, 1):
        merges = [_compare(bound, None, data(items), None) for bound in fields]
        key = f"+{number}"
        _whole_row(merges, MINE, CHOICE_PREFIX + f"{prefix}.{key}")
        rows.append(
            RowMerge(
                prefix,
                key,
                name(None, items),
                ADDED,
                MINE,
                merges,
                None,
                items,
                None,
                choice=CHOICE_PREFIX + f"{prefix}.{key}",
            )
        )
    return InlineMerge(prefix, label, rows, formset)


def _whole_row(merges: list[FieldMerge], status: str, choice: str) -> None:
    """Give the fields of a row added or deleted the row's status and choice: it is taken or left whole."""
    for merge in merges:
        merge.status = status
        merge.choice = choice


def _row_status(statuses: set[str]) -> str:
    """Return the status of a row both sides kept, from its fields' statuses."""
    if CONFLICT in statuses:
        return CONFLICT
    changed = statuses - {UNCHANGED}
    if len(changed) == 1:
        return changed.pop()
    return MERGED if changed else UNCHANGED


def _replace(items: Items, keys: Iterable[str], values: Items) -> Items:
    """Return ``items`` with the values of ``keys`` replaced by ``values``."""
    drop = set(keys)
    return [(k, v) for k, v in items if k not in drop] + [(k, v) for k, v in values if k in drop]


def _merged_rows(merge: InlineMerge) -> Items:
    """Return the inline formset's POST items for the merge: the current rows plus the user's changes."""
    formset = merge.formset
    template = formset.empty_form
    cut = len(template.prefix or "") + 1
    model: Any = formset.model  # type: ignore[attr-defined]
    pk_name = model._meta.pk.name
    fk = getattr(formset, "fk", None)
    initial: list[Items] = []
    extra: list[Items] = []

    def local(keys: Iterable[str]) -> list[str]:
        return [key[cut:] for key in keys]

    def as_new(items: Items) -> Items:
        """Return a row's values as a new row of this parent."""
        drop = {pk_name, DELETION_FIELD_NAME}
        new = [(k, v) for k, v in items if k not in drop] + [(pk_name, "")]
        if fk is not None:
            parent = formset.instance  # type: ignore[attr-defined]
            new = [(k, v) for k, v in new if k != fk.name] + [
                (fk.name, _text(getattr(parent, fk.remote_field.field_name)))
            ]
        return new

    for row in merge.rows:
        side = row.chosen if row.conflict else None
        if row.change == ADDED and row.theirs is not None:
            initial.append(row.theirs)
        elif row.change == ADDED:
            extra.append(as_new(row.mine or []))
        elif row.change == DELETED:
            if row.theirs is not None and (row.status == MINE or side == MINE):
                initial.append([*row.theirs, (DELETION_FIELD_NAME, "on")])
            elif row.theirs is not None:
                initial.append(row.theirs)
            elif side == MINE and row.mine is not None:
                extra.append(as_new(row.mine))
        else:
            items = list(row.theirs or [])
            for f in row.fields:
                if f.taken == MINE:
                    keys = local(_keys(template[f.name]))
                    items = _replace(items, keys, [(k[cut:], v) for k, v in f.mine_items])
            initial.append(items)
    prefix = formset.prefix
    management = formset.management_form
    result: Items = [
        (f"{prefix}-TOTAL_FORMS", str(len(initial) + len(extra))),
        (f"{prefix}-INITIAL_FORMS", str(len(initial))),
        *[
            (management.add_prefix(name), _text(management.initial.get(name)))
            for name in ("MIN_NUM_FORMS", "MAX_NUM_FORMS")
        ],
    ]
    for index, items in enumerate([*initial, *extra]):
        result += [(f"{formset.add_prefix(index)}-{k}", v) for k, v in items]
    return result


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


@dataclass
class _Page:
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


def _version(obj: Any) -> Any:
    return getattr(obj, options(obj).field.attname)


def _version_keys(form: forms.BaseForm) -> list[str]:
    version = options(form._meta.model).field.name  # type: ignore[attr-defined]
    return _keys(form[version]) if version in form.fields else []


def _entered(post: QueryDict) -> Items:
    """Return what a change form's POST holds as data: no buttons, token or bookkeeping."""
    return [
        (key, value)
        for key in post
        if key != "csrfmiddlewaretoken" and key not in _BUTTONS and not key.startswith("_concurrency_")
        for value in post.getlist(key)
    ]


def _one(post: QueryDict, key: str) -> str | None:
    values = post.getlist(key)
    return values[0] if len(values) == 1 else None


class ConflictResolutionMixin:
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
        return super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]

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

    def _inline_formsets(
        self, request: HttpRequest, obj: Any, data: QueryDict | None = None
    ) -> list[tuple[forms.BaseFormSet, Any]]:
        """Return the inline formsets of ``obj``'s change form (bound to ``data`` if given) and inlines."""
        formsets = []
        prefixes: dict[str, int] = {}
        for formset_class, inline in self.get_formsets_with_inlines(request, obj):  # type: ignore[attr-defined]
            prefix = formset_class.get_default_prefix()
            prefixes[prefix] = prefixes.get(prefix, 0) + 1
            if prefixes[prefix] != 1 or not prefix:
                prefix = f"{prefix}-{prefixes[prefix]}"
            kwargs = self.get_formset_kwargs(request, obj, inline, prefix)  # type: ignore[attr-defined]
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
        base: _Snapshot,
        mine: QueryDict,
        theirs: _Snapshot | None = None,
    ) -> tuple[Merge, list[InlineMerge], list[forms.BaseFormSet]]:
        """Compare ``base``, ``mine`` and the object now (or ``theirs``), inline rows included.

        Return the merge, the inline merges and the unbound formsets of the
        rows now; ``_Malformed`` if ``mine`` is not what the change form posts.
        """
        form_class = self.get_form(request, obj, change=True)
        merge = three_way(form_class, obj, base.data, mine, None if theirs is None else theirs.data)
        current = self._inline_formsets(request, obj)
        posted = self._inline_formsets(request, obj, data=mine)
        prefixes = {str(formset.prefix) for formset, _inline in current}
        if set(base.rows) != prefixes or (theirs is not None and set(theirs.rows) != prefixes):
            raise _Malformed("inlines")
        inlines = []
        for (formset, inline), (bound, _inline) in zip(current, posted, strict=True):
            prefix = str(formset.prefix)
            now = _rows([formset])[prefix] if theirs is None else theirs.rows[prefix]
            label = capfirst(str(inline.verbose_name_plural))
            inlines.append(_inline_three_way(formset, bound, base.rows[prefix], now, label))
        return merge, inlines, [formset for formset, _inline in current]

    def _resolve(self, request: HttpRequest, object_id: str) -> HttpResponse | None:
        """Return the resolution page, or ``None`` to let the admin handle the POST."""
        if "_saveasnew" in request.POST:
            return None  # a new object conflicts with nobody
        model = self.model  # type: ignore[attr-defined]
        obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if obj is None or options_of(obj) is None:
            return None
        if not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            return None
        if RESOLVE_FIELD in request.POST:
            return self._resolve_again(request, obj, object_id)
        if _resolution_keys(request.POST):
            return self.render_resolution_invalid(request, object_id)
        try:
            base = _read_snapshot(model, obj.pk, request.POST[BASE_FIELD])
        except ValueError:
            return None  # the form's own version check reports it
        if _version(obj) == base.version:
            return None
        try:
            merge, inlines, formsets = self._compare(request, obj, base, request.POST)
        except _Malformed:
            return None  # not what the change form posts: its own version check refuses it
        page = _Page(merge, inlines, base.shown, base.value, _entered(request.POST))
        return self.render_resolution(request, obj, page, formsets=formsets)

    def _resolve_again(self, request: HttpRequest, obj: Any, object_id: str) -> HttpResponse | None:
        """Save the choices made on a resolution page, or show the page again."""
        model = self.model  # type: ignore[attr-defined]
        post = request.POST
        try:
            theirs = _read_snapshot(model, obj.pk, _one(post, BASE_FIELD))
            state = _read_state(model, obj.pk, _one(post, STATE_FIELD))
            started = _read_snapshot(model, obj.pk, state.started)
        except ValueError:
            return self.render_resolution_invalid(request, object_id)
        form = self.get_form(request, obj, change=True)(instance=obj)
        if state.version != theirs.version or not _valid_resolution(post, form):
            return self.render_resolution_invalid(request, object_id)
        try:
            merge, inlines, formsets = self._compare(request, obj, started, _query(state.mine), theirs)
        except _Malformed:
            return self.render_resolution_invalid(request, object_id)
        if _inline_keys(post, inlines):
            return self.render_resolution_invalid(request, object_id)
        page = _Page(merge, inlines, started.shown, started.value, state.mine, theirs.value, theirs.version)
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
        if _version(obj) == theirs.version:
            return None  # saved by the admin, checked against the version the page showed
        try:
            merge, inlines, formsets = self._compare(request, obj, theirs, merged)
        except _Malformed:
            return self.render_resolution_invalid(request, object_id)
        page = _Page(merge, inlines, theirs.shown, theirs.value, _entered(merged))
        return self.render_resolution(request, obj, page, formsets=formsets, again=True)

    def _merged_post(self, post: QueryDict, page: _Page, form: forms.BaseForm) -> QueryDict:
        """Build the change form's POST from what the user entered, the rows now and the choices made."""
        fields = {bound.name: _keys(bound) for bound in _merged_fields(form)}
        covered = {key for keys in fields.values() for key in keys} | set(_version_keys(form))
        prefixes = tuple(f"{inline.prefix}-" for inline in page.inlines)
        merged = QueryDict(mutable=True)
        mine = _query(page.mine)
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
            for key, value in _merged_rows(inline):
                merged.appendlist(key, value)
        return merged

    def render_resolution(
        self,
        request: HttpRequest,
        obj: models.Model,
        page: _Page,
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
            page.version = _version(obj)
        state = _sign_state(type(obj), obj.pk, _State(page.version, page.started, page.mine))
        if version_items is None:
            version_items = page.merge.version_items
        hidden: Items = [
            (BASE_FIELD, page.theirs),
            (STATE_FIELD, state),
            (RESOLVE_FIELD, "1"),
            *version_items,
        ]
        request.current_app = self.admin_site.name  # type: ignore[attr-defined]
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": _("Resolve the conflicting changes to %(obj)s") % {"obj": obj},
            "subtitle": None,
            "opts": opts,
            "original": obj,
            "merge": page.merge,
            "inlines": [inline for inline in page.inlines if inline.shown],
            "choices": len(page.choices),
            "missing": len([name for name in page.choices if name not in _chosen(page)]) if missing else 0,
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
        return bool(self.has_view_or_change_permission(request, obj))  # type: ignore[attr-defined]

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


def _chosen(page: _Page) -> set[str]:
    names = {f.choice for f in page.merge.fields if f.chosen}
    for inline in page.inlines:
        for row in inline.rows:
            if row.chosen:
                names.add(row.choice)
            names |= {f.choice for f in row.fields if f.chosen}
    return names


def _resolution_keys(post: QueryDict) -> list[str]:
    """Return the keys of ``post`` that only a resolution page sends."""
    return [
        key
        for key in post
        if key in (RESOLVE_FIELD, STATE_FIELD) or key.startswith((CHOICE_PREFIX, MINE_PREFIX, THEIRS_PREFIX))
    ]


def _valid_resolution(post: QueryDict, form: forms.BaseForm) -> bool:
    """Return whether ``post`` has the shape of what the resolution page of ``form`` sends.

    One snapshot, one state and the resolve flag; choices that are ``mine``
    or ``theirs``; no value for a field the page merges (the page rebuilds
    them from the signed state); no other ``_concurrency_*`` key.
    """
    if post.getlist(RESOLVE_FIELD) != ["1"] or len(post.getlist(BASE_FIELD)) != 1:
        return False
    if len(post.getlist(STATE_FIELD)) != 1:
        return False
    covered = {key for bound in _merged_fields(form) for key in _keys(bound)}
    for key in post:
        if key in (BASE_FIELD, RESOLVE_FIELD, STATE_FIELD):
            continue
        if key.startswith(CHOICE_PREFIX):
            if post.getlist(key) not in ([MINE], [THEIRS]):
                return False
        elif key.startswith("_concurrency_") or key in covered:
            return False
    return True


def _inline_keys(post: QueryDict, inlines: Iterable[InlineMerge]) -> list[str]:
    """Return the keys of ``post`` that belong to an inline formset (a resolution page sends none)."""
    prefixes = tuple(f"{inline.prefix}-" for inline in inlines)
    return [key for key in post if prefixes and key.startswith(prefixes)]
