"""Reading what a change form or a resolution page posted."""

from __future__ import annotations

from collections.abc import Iterable

from django import forms
from django.http import QueryDict

from .merge import InlineMerge, Page
from .snapshot import (
    BASE_FIELD,
    BUTTONS,
    CHOICE_PREFIX,
    MINE,
    MINE_PREFIX,
    RESOLVE_FIELD,
    STATE_FIELD,
    THEIRS,
    THEIRS_PREFIX,
    Items,
    keys_of,
    merged_fields,
)


def entered(post: QueryDict) -> Items:
    """Return what a change form's POST holds as data: no buttons, token or bookkeeping."""
    return [
        (key, value)
        for key in post
        if key != "csrfmiddlewaretoken" and key not in BUTTONS and not key.startswith("_concurrency_")
        for value in post.getlist(key)
    ]


def one(post: QueryDict, key: str) -> str | None:
    values = post.getlist(key)
    return values[0] if len(values) == 1 else None


def chosen(page: Page) -> set[str]:
    names = {f.choice for f in page.merge.fields if f.chosen}
    for inline in page.inlines:
        for row in inline.rows:
            if row.chosen:
                names.add(row.choice)
            names |= {f.choice for f in row.fields if f.chosen}
    return names


def resolution_keys(post: QueryDict) -> list[str]:
    """Return the keys of ``post`` that only a resolution page sends."""
    return [
        key
        for key in post
        if key in (RESOLVE_FIELD, STATE_FIELD) or key.startswith((CHOICE_PREFIX, MINE_PREFIX, THEIRS_PREFIX))
    ]


def valid_resolution(post: QueryDict, form: forms.BaseForm) -> bool:
    """Return whether ``post`` has the shape of what the resolution page of ``form`` sends.

    One snapshot, one state and the resolve flag; choices that are ``mine``
    or ``theirs``; no value for a field the page merges (the page rebuilds
    them from the signed state); no other ``_concurrency_*`` key.
    """
    if post.getlist(RESOLVE_FIELD) != ["1"] or len(post.getlist(BASE_FIELD)) != 1:
        return False
    if len(post.getlist(STATE_FIELD)) != 1:
        return False
    covered = {key for bound in merged_fields(form) for key in keys_of(bound)}
    for key in post:
        if key in (BASE_FIELD, RESOLVE_FIELD, STATE_FIELD):
            continue
        if key.startswith(CHOICE_PREFIX):
            if post.getlist(key) not in ([MINE], [THEIRS]):
                return False
        elif key.startswith("_concurrency_") or key in covered:
            return False
    return True


def inline_keys(post: QueryDict, inlines: Iterable[InlineMerge]) -> list[str]:
    """Return the keys of ``post`` that belong to an inline formset (a resolution page sends none)."""
    prefixes = tuple(f"{inline.prefix}-" for inline in inlines)
    return [key for key in post if prefixes and key.startswith(prefixes)]
