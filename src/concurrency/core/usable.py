"""A refused save leaves the caller's transaction usable.

Django runs save() and delete() inside mark_for_rollback_on_error() (or an
atomic block), so any exception, a refusal too, marks the caller's
transaction for rollback and its next query fails. An UPDATE that matched no
row changed nothing: when the refused save or delete wrote nothing before the
refusal (no parent table of a multi-table model, no aggregate root, nothing
from a signal receiver), the mark it caused is taken back. When something was
written, it stays, so a partial save never commits.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

from django.db import connections

from ..exceptions import RecordDeletedError, RecordModifiedError, VersionNotLoadedError
from .hooks import wrap_once
from .versions import database_of


class Writes:
    """Whether a save (and the saves around it) has changed rows yet."""

    __slots__ = ("outer", "wrote")

    def __init__(self, outer: Writes | None) -> None:
        self.outer = outer
        self.wrote = False

    def note(self) -> None:
        cell: Writes | None = self
        while cell is not None and not cell.wrote:
            cell.wrote = True
            cell = cell.outer


writes: contextvars.ContextVar[Writes | None] = contextvars.ContextVar("concurrency_writes", default=None)


def _harmless(error: BaseException) -> bool:
    """Return whether ``error`` is a refusal raised before the database failed anything."""
    if isinstance(error, VersionNotLoadedError):
        return True
    return type(error) in (RecordModifiedError, RecordDeletedError)


def keep_transaction_usable(model: Any) -> None:
    """Wrap ``model.save_base`` and ``model.delete`` so a refusal that wrote nothing keeps the transaction."""
    wrap_once(model, "save_base", "usable", lambda method: _usable(method, 4))
    wrap_once(model, "delete", "usable", lambda method: _usable(method, 1))


def _usable(method: Any, position: int) -> Any:
    """Wrap ``method``, whose ``using`` is its ``position``-th positional argument."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        cell = Writes(writes.get())
        token = writes.set(cell)
        using = kwargs.get("using") or (args[position - 1] if len(args) >= position else None)
        using = using or database_of(self)
        connection = connections[using]
        marked = connection.needs_rollback
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            if (
                _harmless(error)
                and not cell.wrote
                and not marked
                and connection.in_atomic_block
                and connection.needs_rollback
            ):
                connection.needs_rollback = False
                vars(connection)["rollback_exc"] = None
            raise
        finally:
            writes.reset(token)

    return wrapper
