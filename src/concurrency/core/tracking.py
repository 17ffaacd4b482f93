"""The version an instance holds, and giving it back when its write rolls back.

A write inside atomic() puts the new version on the instance at once, but a
rollback does not take it back. Left there, the instance would hold a version
the row never committed: the next writer commits that same number, and the
stale instance's save then matches it and overwrites that write unseen.

So every path that moves an instance's version (save, checked delete, the
many-to-many touch, bulk_update) calls ``set_written_version()``, which keeps
the write's (old, new) pair on the instance until its transaction commits.
The version field's descriptor calls ``settle()`` on every read: a write
that was rolled back gives the instance its old version back, so nothing,
neither a save nor a form rendering the version, ever sees a number the row
never committed. Assigning the version from outside (refresh_from_db(), a
form, a test) replaces what was tracked.

Where the library cannot know whether a write committed (manual transaction
management, an instance unpickled while its write was still open), the
write counts as rolled back: the worst outcome is a false conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

from django.db import connections
from django.db.models import Model

from ..conf import conf
from ..exceptions import VersionNotLoadedError
from .commit import Commit, commit_marker
from .options import VersionFieldHooks, checks_off, is_checked, options
from .refusal import raise_conflict
from .roots import record_root_write, root_write
from .rows import follow_row, forget_loaded_row
from .versions import VERSION_RANGE, storable

WRITES = "_concurrency_writes"
# Set on an instance whose deferred version was loaded after the rest of its row.
LATE = "_concurrency_late"

_Carried = TypeVar("_Carried")


class _Write(NamedTuple):
    """A version ``new`` written over ``old``, alive as long as ``commit`` is."""

    commit: Commit
    old: Any
    new: Any


def set_written_version(
    instance: Model,
    using: str,
    old: Any,
    new: Any,
    written: list[tuple[Any, Any, Any]] | None = None,
    connection: Any = None,
) -> None:
    """Give ``instance`` the version ``new`` that a write on ``using`` stored over ``old``.

    Every write path that changes the version an instance holds calls this,
    so that a rollback undoes it on the instance too. ``written`` are the
    values of a checked, incremented save (``save_update``): the row the
    instance was loaded with follows them; any other write forgets that row.
    """
    track_write(instance, using, old, new, connection)
    follow_row(instance, old, new, written)
    meta = options(instance)
    if meta.is_root and new != old:
        record_root_write(meta.field.model, instance.pk, using, new, new, by_child=False)


def track_write(instance: Model, using: str, old: Any, new: Any, connection: Any = None) -> None:
    """Put ``new`` on ``instance``, to be given back ``old`` if the write's transaction rolls back."""
    attname = options(instance).field.attname
    data = instance.__dict__
    data[attname] = new
    if new == old:
        return
    if connection is None:
        connection = connections[using]
    if connection.in_atomic_block:
        commit = commit_marker(connection)
        writes: tuple[_Write, ...] = data.get(WRITES, ())
        if writes and writes[-1].commit is commit:
            # Written again in the same savepoint: both writes live or die together.
            data[WRITES] = (*writes[:-1], _Write(commit, writes[-1].old, new))
        else:
            data[WRITES] = (*writes, _Write(commit, old, new))
    elif not connection.get_autocommit():
        # Manual transaction management: there is no way to learn the outcome.
        data[WRITES] = (*data.get(WRITES, ()), _Write(Commit(None), old, new))


def settle(instance: Model) -> None:
    """Give ``instance`` back the versions that rolled-back transactions took from it."""
    data = instance.__dict__
    writes = data.get(WRITES)
    if not writes:
        return
    attname = options(instance).field.attname
    kept = list(writes)
    while kept:
        write = kept[-1]
        if write.commit.committed:
            kept = []
        elif write.commit.pending():
            break
        else:
            kept.pop()
            if data.get(attname) == write.new:
                data[attname] = write.old
            # The row followed the write: the version it is known at was never committed.
            forget_loaded_row(instance)
    # A new tuple: copies of the instance keep their own history.
    if kept:
        if len(kept) != len(writes):
            data[WRITES] = tuple(kept)
    else:
        del data[WRITES]


def forget_writes(instance: Model) -> None:
    """Drop what was tracked: the version was set from outside (refresh, form, assignment)."""
    instance.__dict__.pop(WRITES, None)


def version_to_check(instance: Any, field: VersionFieldHooks, using: str) -> tuple[Any, bool]:
    """Return the version ``instance`` holds and whether its write is checked against it.

    Refuses what cannot be checked: a version that was not loaded with the
    row (``VersionNotLoadedError``) or that no row can hold (a conflict).
    An aggregate root whose version this transaction moved for a child write
    (and only for that) is checked against the version it moved to: the root
    row itself did not change, and nobody else can have written it since.
    """
    old, checked = loaded_version(instance, field)
    if checked:
        old = _checked_version(instance, field, using, old, options(instance).is_root)
    return old, checked


def versions_to_check(
    items: Iterable[tuple[Model, _Carried]], field: VersionFieldHooks, using: str
) -> Iterator[tuple[Model, _Carried, Any, bool]]:
    """``version_to_check`` of many instances of one model, for the instances whose checks are on.

    Yields ``(instance, carried, version, checked)``; ``carried`` is whatever the
    caller paired with the instance (``verify_unchanged``: its key). The
    switches and each class's options are read once, not per instance: a
    check of a hundred rows is per-instance work in the client.
    """
    if checks_off.get():
        # A switch is on: it may name single instances, so each is asked.
        for instance, carried in items:
            old, checked = version_to_check(instance, field, using)
            if checked or is_checked(instance):
                yield instance, carried, old, checked
        return
    on = conf.ENABLED
    cls: Any = None
    for instance, carried in items:
        if type(instance) is not cls:
            # Once per run of one class: the rows of a decision mostly share one.
            cls, meta = type(instance), options(instance)
            enabled, root = on and meta.enabled, meta.is_root
        if not enabled:
            forget_loaded_row(instance)
            continue
        old, checked = loaded_version(instance, field, switched_on=True)
        if checked and (root or type(old) is not int or old not in VERSION_RANGE):
            old = _checked_version(instance, field, using, old, root)
        yield instance, carried, old, checked


def _checked_version(instance: Any, field: VersionFieldHooks, using: str, old: Any, root: bool) -> Any:
    """Return the version a checked write of ``instance`` holding ``old`` is compared with."""
    if not storable(old):
        raise_conflict(instance, old, using)
    if root:
        entry = root_write(field.model, instance.pk, using)
        if entry is not None and entry.by_child and old == entry.old:
            track_write(instance, using, old, entry.new)
            return entry.new
    return old


def loaded_version(instance: Any, field: VersionFieldHooks, switched_on: bool = False) -> tuple[Any, bool]:
    """Return the version ``instance`` was loaded with and whether its write is checked against it.

    ``switched_on``: the caller knows the checks are on for ``instance``.
    """
    if not switched_on and not is_checked(instance):
        # Unchecked, the write may meet the row at any version: the row the
        # instance was loaded with says nothing about it (compared in SQL).
        forget_loaded_row(instance)
        return getattr(instance, field.attname), False
    data = instance.__dict__
    if field.attname not in data or LATE in data:
        raise VersionNotLoadedError(instance, field.name)
    if WRITES in data:
        settle(instance)
    old = data[field.attname]
    if old or conf.VERSION_FIELD_REQUIRED:  # (the setting is read only for a version 0 or None)
        return old, True
    forget_loaded_row(instance)
    return old, False
