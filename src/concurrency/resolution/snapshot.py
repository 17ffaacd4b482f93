"""What the form showed (the signed snapshot) and what a resolution page carries (its signed state)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core import signing
from django.db import models
from django.forms.formsets import DELETION_FIELD_NAME, ORDERING_FIELD_NAME
from django.http import QueryDict

from ..core.options import options, options_of
from ..signing import dumps_for_row, loads_for_row

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
BUTTONS = ("_save", "_continue", "_addanother", "_saveasnew")


# -- The snapshot of what the form showed -------------------------------------


def _suffixes(widget: forms.MultiWidget) -> list[str]:
    """Return the suffixes of a multi-widget's POST keys (set by ``MultiWidget.__init__``)."""
    return list(vars(widget)["widgets_names"])


def form_model(form: Any) -> Any:
    """Return the model of a model form (``form._meta.model``)."""
    return form._meta.model


def keys_of(bound: forms.BoundField) -> list[str]:
    """Return the POST keys a field's widget reads."""
    widget = bound.field.widget
    if isinstance(widget, forms.MultiWidget):
        return [bound.html_name + suffix for suffix in _suffixes(widget)]
    return [bound.html_name]


def items_of(bound: forms.BoundField, value: Any) -> Items:
    """Return ``value`` as the POST items the field's widget would submit."""
    widget = bound.field.widget
    if isinstance(widget, forms.CheckboxInput):
        return [(bound.html_name, "on")] if widget.check_test(value) else []
    if isinstance(widget, forms.widgets.ChoiceWidget):
        return [(bound.html_name, v) for v in widget.format_value(value)]
    if isinstance(widget, forms.MultiWidget):
        parts: Any = value if isinstance(value, list | tuple) else widget.decompress(value)
        names = _suffixes(widget)
        return [
            (bound.html_name + suffix, as_text(sub.format_value(part)))
            for suffix, sub, part in zip(names, widget.widgets, parts or [], strict=False)
        ]
    if isinstance(value, list | tuple):
        return [(bound.html_name, as_text(v)) for v in value]
    return [(bound.html_name, as_text(widget.format_value(value)))]


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def merged_fields(form: forms.BaseForm, exclude: Iterable[str] = ()) -> list[forms.BoundField]:
    """Return the fields a three-way merge covers: visible, editable, not files."""
    version = options_of(form_model(form))
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
        items += [(key[cut:], value) for key, value in items_of(bound, bound.value())]
    return items


def rows_of(formsets: Iterable[forms.BaseFormSet]) -> Rows:
    """Return the rows the inline formsets show: each initial form's pk and values."""
    return {
        str(formset.prefix): [(str(form.instance.pk), _row_items(form)) for form in formset.initial_forms]
        for formset in formsets
    }


def snapshot(form: forms.BaseModelForm, formsets: Iterable[forms.BaseFormSet] = ()) -> str:
    """Return the signed snapshot of an unbound change form and its inline formsets.

    It holds the version, every field's value and every inline row's values.
    """
    instance = form.instance
    items: Items = []
    for bound in merged_fields(form):
        items += items_of(bound, bound.value())
    version = getattr(instance, options(instance).field.attname)
    rows = {prefix: [[pk, row] for pk, row in shown] for prefix, shown in rows_of(formsets).items()}
    payload = {"v": version, "t": int(time.time()), "d": items, "i": rows}
    model: Any = type(instance)._meta.concrete_model
    return dumps_for_row(payload, "resolution", model, instance.pk)


@dataclass
class Snapshot:
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


def as_query(items: Iterable[tuple[str, str]]) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, item in items:
        data.appendlist(key, item)
    return data


def read_snapshot_of(model: type[models.Model], pk: Any, value: Any) -> Snapshot:
    """Return a snapshot; ``ValueError`` if it is forged, broken or from an earlier release."""
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        payload = loads_for_row(value, "resolution", model, pk)
        rows: Rows = {}
        for prefix, shown in payload["i"].items():
            rows[str(prefix)] = [(str(row_pk), _pairs(row)) for row_pk, row in shown]
        shown_at = datetime.fromtimestamp(int(payload["t"]), tz=UTC)
        return Snapshot(payload["v"], shown_at, as_query(_pairs(payload["d"])), rows, value)
    except (signing.BadSignature, AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError("invalid conflict snapshot") from exc


def read_snapshot(model: type[models.Model], pk: Any, value: str) -> tuple[Any, datetime, QueryDict]:
    """Return the version, the time and the data of a snapshot; ``ValueError`` if it is forged or broken."""
    shot = read_snapshot_of(model, pk, value)
    return shot.version, shot.shown, shot.data


class _SnapshotField(forms.CharField):
    """The hidden snapshot: bookkeeping, never a change the user made (nor one the admin logs)."""

    widget = forms.HiddenInput

    def has_changed(self, initial: Any, data: Any) -> bool:
        return False


class SnapshotForm(forms.ModelForm):
    """Adds the hidden, signed snapshot of what the form showed."""

    _concurrency_base = _SnapshotField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and not self.instance._state.adding and options_of(self.instance) is not None:
            self.fields[BASE_FIELD].initial = snapshot(self)


# -- The state of a resolution page -------------------------------------------


@dataclass
class State:
    """What a resolution page carries, signed: the version it shows, the start, what the user entered."""

    version: Any
    started: str
    mine: Items


def sign_state(model: Any, pk: Any, state: State) -> str:
    payload = {"v": state.version, "s": state.started, "m": state.mine}
    return dumps_for_row(payload, "resolution.state", model, pk)


def read_state(model: Any, pk: Any, value: Any) -> State:
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        payload = loads_for_row(value, "resolution.state", model, pk)
        started = payload["s"]
        if not isinstance(started, str):
            raise TypeError(started)
        return State(payload["v"], started, _pairs(payload["m"]))
    except (signing.BadSignature, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError("invalid resolution state") from exc
