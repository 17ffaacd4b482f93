"""Every ORM write to a watched table runs through its watcher.

Every INSERT, UPDATE and DELETE the ORM sends is compiled by the backend's
SQLInsertCompiler, SQLUpdateCompiler or SQLDeleteCompiler: save(), queryset
update()/delete(), bulk_create(), bulk_update(), related managers, cascades
and SET_NULL alike. The compilers of every connection are subclassed once so
that a write to a table with a watcher (aggregates.py) runs through it.
While a hot attempt of ``retry_on_conflict`` runs, SELECTs are handed out
through ``reading`` too.
"""

from __future__ import annotations

import contextvars
from typing import Any

from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Model

from .hooks import is_wrapper, wrap_once
from .usable import writes

_watchers: dict[type[Model], Any] = {}

# The instance whose own row the statement being compiled writes (save(),
# a root bump); None for set-based writes.
writing: contextvars.ContextVar[Model | None] = contextvars.ContextVar("concurrency_writing", default=None)


def watch_writes(model: type[Model], watcher: Any) -> None:
    """Send every ORM write to the table of ``model`` through ``watcher(compiler, kind, write)``.

    ``kind`` is ``"insert"``, ``"update"`` or ``"delete"``; ``write()`` runs
    the statement and returns its result. Saves of ``model`` tell the watcher
    which instance they write (``writing``).
    """
    _watchers[model] = watcher
    for klass in (model, *model.__subclasses__()):
        tell_row_writes(klass)


def tell_row_writes(model: Any) -> None:
    """Wrap ``model._do_update``/``_do_insert`` so that the watcher knows the instance being saved."""
    for name in ("_do_update", "_do_insert"):
        wrap_once(model, name, "row", _telling_row)


def _telling_row(method: Any) -> Any:
    def row_write(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = writing.set(self)
        try:
            return method(self, *args, **kwargs)
        finally:
            writing.reset(token)

    return row_write


def is_row_hook(method: Any) -> bool:
    """Return whether ``method`` is the ``_do_update``/``_do_insert`` wrapper of ``watch_writes``."""
    return is_wrapper(method, "row")


_hooked: dict[type, type] = {}
_KINDS = {"SQLInsertCompiler": "insert", "SQLUpdateCompiler": "update", "SQLDeleteCompiler": "delete"}
# The compiler whose write is being watched: its own fallbacks are not watched twice.
_watching: contextvars.ContextVar[Any] = contextvars.ContextVar("concurrency_watching", default=None)


def run_watched(compiler: Any, kind: str, run: Any) -> Any:
    """Run the write ``run()`` of ``compiler`` through the watcher of its table, if it has one."""
    if _watching.get() is compiler:
        return run()
    watcher = _watchers.get(compiler.query.model._meta.concrete_model) if _watchers else None
    token = _watching.set(compiler)
    try:
        result = run() if watcher is None else watcher(compiler, kind, run)
    finally:
        _watching.reset(token)
    cell = writes.get()
    if cell is not None and (kind == "insert" or result):
        # A statement that changed rows: a refusal after it is no longer harmless.
        cell.note()
    return result


# --- A refused save leaves the caller's transaction usable --------------------
# Django runs save() and delete() inside mark_for_rollback_on_error() (or an
# atomic block), so any exception, a refusal too, marks the caller's
# transaction for rollback and its next query fails. An UPDATE that matched no
# row changed nothing: when the refused save or delete wrote nothing before the
# refusal (no parent table of a multi-table model, no aggregate root, nothing
# from a signal receiver), the mark it caused is taken back. When something was


def _watched_compiler(klass: Any, kind: str) -> type:
    hooked = _hooked.get(klass)
    if hooked is not None:
        return hooked

    def execute_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
        return run_watched(self, kind, lambda: klass.execute_sql(self, *args, **kwargs))

    methods: dict[str, Any] = {"execute_sql": execute_sql}
    if hasattr(klass, "execute_returning_sql"):  # Django 6: save() of rows with db_returning fields

        def execute_returning_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
            return run_watched(self, kind, lambda: klass.execute_returning_sql(self, *args, **kwargs))

        methods["execute_returning_sql"] = execute_returning_sql
    hooked = _hooked[klass] = type(klass.__name__, (klass,), methods)
    return hooked


# --- Reads: a SELECT compiled in a hot attempt (retry.hot) ---------------------
# While ``reading`` holds an object, every SELECT the ORM compiles in this
# thread or task asks its ``lock_read(compiler)`` first; True makes the
# statement a locking read (``SELECT ... FOR UPDATE``). Outside, SELECTs get
# the backend's own compiler untouched.
reading: contextvars.ContextVar[Any] = contextvars.ContextVar("concurrency_reading", default=None)
_read_compilers: dict[type, type] = {}


def _reading_compiler(klass: Any) -> type:
    hooked = _read_compilers.get(klass)
    if hooked is not None:
        return hooked

    def as_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
        reader = reading.get()
        query = self.query
        if reader is None or query.select_for_update or not reader.lock_read(self):
            return klass.as_sql(self, *args, **kwargs)
        # The queryset's own query: locking for this statement only.
        query.select_for_update = True
        try:
            return klass.as_sql(self, *args, **kwargs)
        finally:
            query.select_for_update = False

    hooked = _read_compilers[klass] = type(klass.__name__, (klass,), {"as_sql": as_sql})
    return hooked


def watch_compilers() -> None:
    """Make every backend hand out watched INSERT/UPDATE/DELETE compilers (see ``watch_writes``).

    On the operations class, not on connections: a query is compiled before
    its thread's connection is opened. SELECT compilers are handed out as
    they are, except while ``reading`` is set.
    """
    wrap_once(BaseDatabaseOperations, "compiler", "compilers", _handing_out_watched)


def _handing_out_watched(original: Any) -> Any:
    def compiler(self: Any, compiler_name: str) -> Any:
        klass = original(self, compiler_name)
        kind = _KINDS.get(compiler_name)
        if kind is not None:
            return _watched_compiler(klass, kind)
        if compiler_name == "SQLCompiler" and reading.get() is not None:
            return _reading_compiler(klass)
        return klass

    return compiler


watch_compilers()
