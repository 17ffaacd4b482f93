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

The package: ``snapshot`` (what the form showed, signed), ``merge`` (the
three-way comparison), ``inlines`` (inline rows) and ``page`` (the admin mixin).
"""

from .merge import FieldMerge, InlineMerge, Merge, RowMerge, changed_by, three_way
from .page import ConflictResolutionMixin
from .snapshot import BASE_FIELD
from .snapshot import CHOICE_PREFIX as CHOICE_PREFIX
from .snapshot import MINE_PREFIX as MINE_PREFIX
from .snapshot import RESOLVE_FIELD as RESOLVE_FIELD
from .snapshot import STATE_FIELD as STATE_FIELD
from .snapshot import THEIRS_PREFIX as THEIRS_PREFIX
from .snapshot import read_snapshot as read_snapshot
from .snapshot import snapshot as snapshot

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
