"""What the admin's parts share: the names of rows in messages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _

if TYPE_CHECKING:
    pass


ROW_VERSION_KEY = "_concurrency_version"
# Suffix of the hidden input holding the values a list_editable row was shown with
# (JSON), so that a conflict lists only the fields the user changed.
ROW_SHOWN_KEY = "_concurrency_shown"

# A request that keeps losing races is answered with a message after this many tries.
ATTEMPTS = 3
# Conflicting rows named one by one in messages; the rest are counted.
NAMED_ROWS = 10


def describe(obj: Any) -> str:
    return f"“{obj}”"


def row_names(objects: Iterable[Any]) -> str:
    items = list(objects)
    shown = ", ".join(describe(obj) for obj in items[:NAMED_ROWS])
    if len(items) > NAMED_ROWS:
        shown += " " + _("and %(count)d more") % {"count": len(items) - NAMED_ROWS}
    return shown
