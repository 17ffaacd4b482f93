"""The three-way comparison of inline rows, and the inline POST rebuilt from the choices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.formsets import DELETION_FIELD_NAME, ORDERING_FIELD_NAME
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from .merge import FieldMerge, InlineMerge, RowMerge, compare, display, normal
from .snapshot import (
    ADDED,
    CHANGED,
    CHOICE_PREFIX,
    CONFLICT,
    DELETED,
    MERGED,
    MINE,
    SAME,
    THEIRS,
    UNCHANGED,
    Items,
    as_query,
    as_text,
    keys_of,
    merged_fields,
)


class Malformed(ValueError):  # noqa: N818 - internal signal, never leaves the mixin
    """Inline formset data that no change form sends."""


def _local(prefix: str, data: Any) -> Items:
    """Return the items of ``data`` under ``prefix-``, keyed without it."""
    cut = len(prefix) + 1
    return [(key[cut:], value) for key in data if key.startswith(prefix + "-") for value in data.getlist(key)]


def _posted_rows(formset: Any, base: Sequence[str]) -> tuple[dict[str, Items | None], list[Items]]:
    """Return the rows a bound inline formset posts: ``{pk: items, or None if deleted}`` and the added rows.

    Every row of ``base`` must be posted once, and no other existing row.
    """
    management = formset.management_form
    if not management.is_valid():
        raise Malformed("management form")
    initial, total = formset.initial_form_count(), formset.total_form_count()
    if initial != len(base) or total < initial:
        raise Malformed("form counts")
    model: Any = formset.model
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
            raise Malformed("pk") from exc
        if pk not in base or pk in rows:
            raise Malformed("pk")
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


def _excluded(formset: Any) -> set[str]:
    """Return the inline form's fields that are bookkeeping: the pk, the parent key, DELETE, ORDER."""
    model: Any = formset.model
    names = {model._meta.pk.name, DELETION_FIELD_NAME, ORDERING_FIELD_NAME}
    fk = getattr(formset, "fk", None)
    if fk is not None:
        names.add(fk.name)
    return names


def inline_three_way(
    formset: Any,
    mine: forms.BaseFormSet,
    base: list[tuple[str, Items]],
    theirs: list[tuple[str, Items]],
    label: str,
) -> InlineMerge:
    """Compare the rows of one inline: started from (``base``), posted (``mine``, bound) and now (``theirs``).

    ``formset`` is unbound, for the current rows: its empty form reads values
    and its instances name the rows. ``Malformed`` if ``mine`` is not what
    the change form posts.
    """
    template = formset.empty_form
    prefix = str(formset.prefix)
    fields = merged_fields(template, _excluded(formset))
    posted, added = _posted_rows(mine, [pk for pk, _row in base])
    current = {str(form.instance.pk): form.instance for form in formset.initial_forms}
    theirs_rows = dict(theirs)
    base_rows = dict(base)

    def data(items: Items | None) -> QueryDict | None:
        if items is None:
            return None
        return as_query((f"{template.prefix}-{k}", v) for k, v in items)

    def same(one: Items | None, other: Items | None) -> bool:
        a, b = data(one), data(other)
        return all(normal(bound, a) == normal(bound, b) for bound in fields)  # type: ignore[arg-type]

    def name(pk: str | None, *sides: Items | None) -> str:
        if pk is not None and pk in current:
            return str(current[pk])
        for items in sides:
            if items is not None and fields:
                return display(fields[0], data(items))  # type: ignore[arg-type]
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
            merge = compare(bound, data(b), data(m), data(t))
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
        merges = [compare(bound, None, data(items), None) for bound in fields]
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


def merged_rows(merge: InlineMerge) -> Items:
    """Return the inline formset's POST items for the merge: the current rows plus the user's changes."""
    formset: Any = merge.formset
    template = formset.empty_form
    cut = len(template.prefix or "") + 1
    model: Any = formset.model
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
            parent = formset.instance
            new = [(k, v) for k, v in new if k != fk.name] + [
                (fk.name, as_text(getattr(parent, fk.remote_field.field_name)))
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
                    keys = local(keys_of(template[f.name]))
                    items = _replace(items, keys, [(k[cut:], v) for k, v in f.mine_items])
            initial.append(items)
    prefix = formset.prefix
    management = formset.management_form
    result: Items = [
        (f"{prefix}-TOTAL_FORMS", str(len(initial) + len(extra))),
        (f"{prefix}-INITIAL_FORMS", str(len(initial))),
        *[
            (management.add_prefix(name), as_text(management.initial.get(name)))
            for name in ("MIN_NUM_FORMS", "MAX_NUM_FORMS")
        ],
    ]
    for index, items in enumerate([*initial, *extra]):
        result += [(f"{formset.add_prefix(index)}-{k}", v) for k, v in items]
    return result
