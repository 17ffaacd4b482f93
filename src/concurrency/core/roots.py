"""Versions of aggregate roots moved in the current transaction.

A root's version moves once per transaction however many of its children are
written (aggregates.py). What this transaction did to a root row is kept per
connection, with the same commit marker as a tracked write, so a rolled-back
savepoint or transaction forgets it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db import connections
from django.db.models import Model

from .commit import Commit, commit_marker

ROOTS = "_concurrency_root_writes"


class RootWrite(NamedTuple):
    """This transaction moved a root row from ``old`` to ``new``; ``by_child`` for a child write."""

    commit: Commit
    old: Any
    new: Any
    by_child: bool


def _root_key(model: type[Model], pk: Any) -> tuple[Any, Any]:
    return model, model._meta.pk.to_python(pk)


def root_write(model: type[Model], pk: Any, using: str) -> RootWrite | None:
    """Return what the open transaction on ``using`` did to the root row ``pk`` of ``model``, if anything."""
    connection = connections[using]
    if not connection.in_atomic_block:
        return None
    registry = connection.__dict__.get(ROOTS)
    if not registry:
        return None
    key = _root_key(model, pk)
    entries = registry.get(key)
    while entries:
        entry = entries[-1]
        if not entry.commit.committed and entry.commit.pending():
            return entry
        entries = entries[:-1]
    registry.pop(key, None)
    return None


def record_root_write(model: type[Model], pk: Any, using: str, old: Any, new: Any, *, by_child: bool) -> None:
    """Remember that the open transaction on ``using`` moved the root row ``pk`` from ``old`` to ``new``."""
    connection = connections[using]
    if not connection.in_atomic_block:
        return
    registry = connection.__dict__.setdefault(ROOTS, {})
    if len(registry) > 1000:
        # Forget the rows of finished transactions.
        for stale in list(registry):
            if root_write(stale[0], stale[1], using) is None:
                registry.pop(stale, None)
    key = _root_key(model, pk)
    commit = commit_marker(connection)
    entries = tuple(e for e in registry.get(key, ()) if not e.commit.committed and e.commit.pending())
    if entries and entries[-1].commit is commit:
        entries = entries[:-1]
    registry[key] = (*entries, RootWrite(commit, old, new, by_child))
