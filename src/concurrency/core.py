"""The compare-and-swap write that every other part of the library calls.

Saving a versioned instance is one statement::

    UPDATE t SET ..., version = <new> WHERE t.pk = <pk> AND t.version = <old>

judged by its row count. Only when it matches no row does one more cheap query
tell a conflict (``RecordModifiedError``) from a deletion
(``RecordDeletedError``); a stale instance is never inserted again.

The UPDATE is built directly from the model's cached columns instead of going
through ``QuerySet.filter()``: resolving lookups by name is where a naive
compare-and-swap spends its time (see bench/save.py).
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from django.db import NotSupportedError, connections, router, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.backends.signals import connection_created
from django.db.models import BooleanField, Case, Expression, F, Func, Model, Value, When
from django.db.models.constants import OnConflict
from django.db.models.functions import Cast, Greatest
from django.db.models.lookups import Exact
from django.db.models.sql.constants import ROW_COUNT
from django.db.models.sql.subqueries import UpdateQuery
from django.db.models.sql.where import AND
from django.utils.module_loading import import_string

from .compat import DJANGO_60, savepoint_create
from .conf import conf
from .exceptions import RecordDeletedError, RecordModifiedError, VersionNotLoadedError
from .signals import conflict_detected

if TYPE_CHECKING:
    from django.db.models import Field, QuerySet

    from .fields import VersionField

Rows = list[Any]

# Targets (None = everything, a model class, or an instance) for which checks,
# or version increments, are switched off in the current thread / asyncio task.
_disabled: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "concurrency_disabled", default=()
)
_no_increment: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "concurrency_no_increment", default=()
)


class ConcurrencyOptions:
    """Per-model settings, read from an optional inner ``ConcurrencyMeta``."""

    #: The model is the aggregate root of another (set by ``aggregates.register``).
    is_root = False

    def __init__(self, model: type[Model], field: VersionField) -> None:
        meta = getattr(model, "ConcurrencyMeta", None)
        self.model = model
        self.field = field
        self.enabled: bool = getattr(meta, "enabled", True)
        self.increment: bool = getattr(meta, "increment", True)
        self.check_fields: Sequence[str] | None = getattr(meta, "check_fields", None)
        self.ignore_fields: Sequence[str] | None = getattr(meta, "ignore_fields", None)


class CheckedVersion(int):
    """The version as returned by ``VersionField.pre_save(add=False)``.

    Django asks fields for their values through ``pre_save`` on ordinary saves
    but reads raw attributes during raw (fixture) saves; this marker is how the
    compare-and-swap tells the two apart without another hook.
    """


class Toggled(NamedTuple):
    """One use of a toggle: what it switches off, and the toggle object that did it."""

    target: Any
    owner: Any


def _matches(targets: tuple[Toggled, ...], instance: Any) -> bool:
    for target, _owner in targets:
        if target is None or target is instance:
            return True
        if isinstance(target, type) and isinstance(instance, target):
            return True
    return False


def is_checked(instance: Any) -> bool:
    """Return whether a write of ``instance`` is version-checked right now."""
    if not conf.ENABLED or not instance._concurrencymeta.enabled:
        return False
    disabled = _disabled.get()
    return not (disabled and _matches(disabled, instance))


def is_incremented(instance: Any) -> bool:
    """Return whether a write of ``instance`` bumps its version right now."""
    return instance._concurrencymeta.increment and not increment_switched_off(instance)


def increment_switched_off(instance: Any) -> bool:
    """Return whether ``concurrency_disable_increment`` covers ``instance`` right now."""
    frozen = _no_increment.get()
    return bool(frozen) and _matches(frozen, instance)


def _model_matches(targets: tuple[Toggled, ...], model: type[Model]) -> bool:
    return any(t is None or (isinstance(t, type) and issubclass(model, t)) for t, _owner in targets)


def is_model_incremented(model: Any) -> bool:
    """Return whether writes to every row of ``model`` bump the version right now.

    The queryset counterpart of ``is_incremented``: instance-level switches
    cannot apply to a queryset ``update()``, model-level ones do.
    """
    if not model._concurrencymeta.increment:
        return False
    frozen = _no_increment.get()
    return not (frozen and _model_matches(frozen, model))


def push(var: contextvars.ContextVar[tuple[Any, ...]], entry: Toggled) -> None:
    """Add ``entry`` to a toggle for the current context; see api.py."""
    var.set((*var.get(), entry))


def pop(var: contextvars.ContextVar[tuple[Any, ...]], owner: Any) -> None:
    """Remove the newest entry of ``owner`` from a toggle for the current context."""
    entries = var.get()
    for index in range(len(entries) - 1, -1, -1):
        if entries[index].owner is owner:
            var.set(entries[:index] + entries[index + 1 :])
            return
    raise RuntimeError(f"{owner!r} was finished in a thread or task where it was not started.")


class _VersionIs(Expression):
    """``<version column> = %s``, or ``IS NULL``: the version half of the WHERE clause.

    The SQL of ``Exact``/``IsNull`` lookups, with the value prepared as they
    prepare it, but compiled without resolving (and copying) a lookup on
    every save.
    """

    conditional = True
    output_field = BooleanField()  # One for all: creating a field per save is costly.

    def __init__(self, field: VersionField, alias: str, version: Any, connection: Any) -> None:
        self.col = field.get_col(alias)
        self.value = None if version is None else field.get_db_prep_value(version, connection)

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _VersionIs:
        return self

    # The column, so that the clause can be relabeled inside a subquery (aggregates.py).
    def get_source_expressions(self) -> list[Any]:
        return [self.col]

    def set_source_expressions(self, exprs: Any) -> None:
        (self.col,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        sql, _params = self.col.as_sql(compiler, connection)
        if self.value is None:
            return f"{sql} IS NULL", []
        return f"{sql} = %s", [self.value]


def _run_update(
    base_qs: QuerySet,
    using: str,
    pk_val: Any,
    values: list[tuple[Any, Any, Any]],
    version_field: VersionField | None,
    version: Any,
    returning_fields: Sequence[Any] | None,
    read_back: VersionField | None = None,
    connection: Any = None,
) -> Rows:
    """Run ``UPDATE ... WHERE pk = pk_val [AND version = version]``.

    With ``read_back``, each row returned ends with the value of that field
    as stored (see ``_update_read_back``). ``connection`` is ``connections[using]``
    when the caller has it (looking it up is not free).
    """
    query: Any = base_qs.query.chain(UpdateQuery)
    if connection is None:
        connection = connections[using]
    if (
        read_back is not None
        and not returning_fields
        and connection.vendor == "mysql"
        and read_back.returns_stored(connection)
    ):
        values = [_last_insert_id(entry) if entry[0] is read_back else entry for entry in values]
    query.add_update_fields(values)
    alias = query.get_initial_alias()
    pk = query.model._meta.pk
    query.where.add(pk.get_lookup("exact")(pk.get_col(alias), pk_val), AND)
    if version_field is not None:
        query.where.add(_VersionIs(version_field, alias, version, connection), AND)
    # Query.get_compiler(using) without looking the connection up again.
    compiler = connection.ops.compiler(query.compiler)(query, connection, using, True)
    if read_back is not None:
        fields = [*(returning_fields or ()), read_back]
        return run_watched(  # type: ignore[no-any-return]
            compiler, "update", lambda: _update_read_back(compiler, base_qs, pk_val, fields)
        )
    if returning_fields:
        return compiler.execute_returning_sql(returning_fields)
    return [()] * compiler.execute_sql(ROW_COUNT)


# --- Versions decided by the database (VersionField.version_from_db) --------
# A trigger, or an SQL expression in the SET clause, decides the new version;
# the value stored is read back, never assumed.


def _can_update_returning(connection: Any) -> bool:
    # Django 6 has the feature flag; on 5.2, PostgreSQL and SQLite (3.35+, the
    # same versions that return columns from INSERT) support UPDATE RETURNING.
    flag = getattr(connection.features, "can_return_rows_from_update", None)
    if flag is not None:
        return bool(flag)
    return (
        connection.vendor in ("postgresql", "sqlite") and connection.features.can_return_columns_from_insert
    )


def _update_read_back(compiler: Any, base_qs: QuerySet, pk_val: Any, fields: list[Any]) -> Rows:
    """Run the compiled UPDATE and return the stored values of ``fields``.

    One ``UPDATE ... RETURNING`` where the database has it. On MariaDB and
    MySQL ``UPDATE ... SET version = LAST_INSERT_ID(...)`` (plus ``SELECT
    LAST_INSERT_ID()`` on tables with triggers); when Django also wants other
    columns back, or when a trigger from ``CONCURRENCY_TRIGGERS_FACTORY`` may
    change the row after the statement computed the version, the UPDATE and a
    SELECT of the row run in one transaction, whose row lock keeps anyone
    else from writing in between.
    """
    connection = compiler.connection
    # Unless a trigger of the project's own may rewrite the row afterwards.
    final = fields[-1].returns_stored(connection)
    if final and _can_update_returning(connection):
        returning, converters = _returning(compiler, fields)
        sql, params = compiler.as_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql + returning, params)
            # The wrapper's fetchall() builds an error-wrapping function per call.
            with connection.wrap_database_errors:
                rows = cursor.cursor.fetchall()
        if converters:
            return [tuple(row) for row in compiler.apply_converters(rows, converters)]
        return rows  # type: ignore[no-any-return]
    if final and connection.vendor == "mysql" and len(fields) == 1:
        # The version was written as LAST_INSERT_ID(<value>) (see _run_update),
        # which keeps the value in the session: the server reports it with the
        # statement's result, except on tables with triggers, where MariaDB
        # reports 0 and one SELECT LAST_INSERT_ID() asks for it. Unlike
        # reading the row, nobody else's write can get in between.
        sql, params = compiler.as_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if not cursor.rowcount:
                return []
            if cursor.lastrowid:
                return [(cursor.lastrowid,)]
            cursor.execute("SELECT LAST_INSERT_ID()")
            return [tuple(cursor.fetchone())]
    with transaction.atomic(using=compiler.using, savepoint=False):
        if not compiler.execute_sql(ROW_COUNT):
            return []
        return list(base_qs.filter(pk=pk_val).values_list(*(field.attname for field in fields)))


# (connection alias, fields) -> the RETURNING clause and the converters of its columns.
_returning_cache: dict[tuple[str, tuple[Any, ...]], tuple[str, Any]] = {}


def _returning(compiler: Any, fields: list[Any]) -> tuple[str, Any]:
    key = (compiler.using, tuple(fields))
    try:
        return _returning_cache[key]
    except KeyError:
        pass
    qn = compiler.connection.ops.quote_name
    table = compiler.query.get_meta().db_table
    clause = " RETURNING " + ", ".join(f"{qn(table)}.{qn(field.column)}" for field in fields)
    converters = compiler.get_converters([field.get_col(table) for field in fields])
    if len(_returning_cache) < 1000:
        _returning_cache[key] = clause, converters
    return clause, converters


def _last_insert_id(entry: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    field, model, value = entry
    if not hasattr(value, "resolve_expression"):
        value = Value(value, output_field=field)
    return field, model, Func(value, function="LAST_INSERT_ID", output_field=field)


# A version is a 64-bit column: one that it cannot hold, or whose successor it
# cannot hold, matches no row, whatever reached the instance (a form, a body).
_VERSION_RANGE = range(-(2**63), 2**63 - 1)


def held_version(instance: Any, field: VersionField, using: str) -> tuple[Any, bool]:
    """Return the version ``instance`` holds and whether its write is checked against it.

    Refuses what cannot be checked: a version that was not loaded with the
    row (``VersionNotLoadedError``) or that no row can hold (a conflict).
    An aggregate root whose version this transaction moved for a child write
    (and only for that) is checked against the version it moved to: the root
    row itself did not change, and nobody else can have written it since.
    """
    old, checked = _loaded_version(instance, field)
    if checked and not storable(old):
        raise_conflict(instance, old, using)
    if checked and instance._concurrencymeta.is_root:
        entry = root_write(field.model, instance.pk, using)
        if entry is not None and entry.by_child and old == entry.old:
            _track_write(instance, using, old, entry.new)
            old = entry.new
    return old, checked


def _loaded_version(instance: Any, field: VersionField) -> tuple[Any, bool]:
    if not is_checked(instance):
        # Unchecked, the write may meet the row at any version: the row the
        # instance was loaded with says nothing about it (compared in SQL).
        forget_loaded_row(instance)
        return getattr(instance, field.attname), False
    data = instance.__dict__
    if field.attname not in data or LATE in data:
        raise VersionNotLoadedError(instance)
    settle(instance)
    old = data[field.attname]
    if old or conf.VERSION_FIELD_REQUIRED:
        return old, True
    forget_loaded_row(instance)
    return old, False


def storable(version: Any) -> bool:
    """Return whether ``version`` and its successor fit the version column (or it is NULL)."""
    if version is None:
        return True
    try:
        return int(version) in _VERSION_RANGE
    except (TypeError, ValueError, OverflowError):
        return False


def touch(instance: Model, using: str) -> None:
    """Bump the version of a saved ``instance`` alone, checked, and read it back.

    For changes that do not go through ``save()`` but must still move the
    version, such as a checked many-to-many membership of a
    ``ConditionalVersionField``.
    """
    field = instance._concurrencymeta.field  # type: ignore[attr-defined]
    attname = field.attname
    old, checked = held_version(instance, field, using)
    new = F(attname) + 1 if is_incremented(instance) else F(attname)
    base_qs = field.model._base_manager.using(using)
    rows = _run_update(
        base_qs, using, instance.pk, [(field, None, new)], field if checked else None, old, None, field
    )
    if rows:
        set_written_version(instance, using, old, rows[0][-1])
    elif checked:
        raise_conflict(instance, old, using)


# --- end of versions decided by the database --------------------------------


def save_update(
    instance: Any,
    base_qs: QuerySet,
    using: str,
    pk_val: Any,
    values: list[tuple[Any, Any, Any]],
    update_fields: Any,
    forced_update: Any,
    returning_fields: Sequence[Any] | None,
) -> Rows:
    """Do the conditional UPDATE of a versioned save (see ``versioned_do_update``).

    Return the rows Django 6 expects: ``[]`` when nothing was updated and
    Django may go on to INSERT, which happens only for unchecked writes and
    for instances that were never loaded from the database.
    """
    options = instance._concurrencymeta
    field = options.field
    if base_qs.model is not field.model:
        # Another table of a multi-table inheritance chain: not ours to check.
        return _django_update(
            instance, base_qs, using, pk_val, values, update_fields, forced_update, returning_fields
        )
    attname = field.attname
    new_values = []
    for entry in values:
        if entry[0] is field:
            if type(entry[2]) is not CheckedVersion:
                # A raw save (loaddata): the fixture is authoritative.
                return _django_update(
                    instance, base_qs, using, pk_val, values, update_fields, forced_update, returning_fields
                )
        else:
            new_values.append(entry)

    old, checked = held_version(instance, field, using)
    bump = is_incremented(instance)
    new = field.update_version(instance, old, new_values, bump)
    from_db = field.version_from_db
    connection = connections[using]
    # The version the row will hold, where the database decides it predictably.
    known = field.stored_version(connection, old, new) if from_db and checked else None
    if known is not None:
        from_db = False
    if bump and not checked and not from_db:
        # Unchecked: the row may be ahead of this instance, and the version
        # must still move past whatever it holds; the stored value is read back.
        new = Greatest(F(attname) + 1, Value(new))
        from_db = True
    # Unchecked and not incremented: keep the row's version, which this
    # (possibly stale) instance's would move back.
    stored = F(attname) if not checked and new is old else new
    # First in the SET clause: MySQL evaluates assignments left to right, and an
    # expression computing the version must see the row's old values.
    new_values.insert(0, (field, None, stored))
    rows = _run_update(
        base_qs,
        using,
        pk_val,
        new_values,
        field if checked else None,
        old,
        returning_fields,
        field if from_db else None,
        connection,
    )
    if rows:
        if from_db:
            set_written_version(instance, using, old, rows[0][-1], connection=connection)
            rows = [row[:-1] for row in rows]
        else:
            written = new_values if checked and bump else None
            set_written_version(instance, using, old, new if known is None else known, written, connection)
        return rows
    if not checked:
        return rows
    if instance._state.adding and not field.model._base_manager.using(using).filter(pk=pk_val).exists():
        # Never loaded (built with its pk and a version: a copy, a history
        # row's instance): a missing row is inserted; an existing one at
        # another version is a conflict, not an INSERT over its primary key.
        return rows
    raise_conflict(instance, old, using)


# --- The version an instance holds: one primitive for every write path -------
# A write inside atomic() puts the new version on the instance at once, but a
# rollback does not take it back. Left there, the instance would hold a version
# the row never committed: the next writer commits that same number, and the
# stale instance's save then matches it and overwrites that write unseen.
#
# So every path that moves an instance's version (save, checked delete, the
# many-to-many touch, bulk_update) calls ``set_written_version()``, which keeps
# the write's (old, new) pair on the instance until its transaction commits.
# The version field's descriptor calls ``settle()`` on every read: a write
# that was rolled back gives the instance its old version back, so nothing,
# neither a save nor a form rendering the version, ever sees a number the row
# never committed. Assigning the version from outside (refresh_from_db(), a
# form, a test) replaces what was tracked.
#
# Where the library cannot know whether a write committed (manual transaction
# management, an instance unpickled while its write was still open), the
# write counts as rolled back: the worst outcome is a false conflict.

WRITES = "_concurrency_writes"
# Set on an instance whose deferred version was loaded after the rest of its row.
LATE = "_concurrency_late"


class _Commit:
    """The fate of a tracked write: an ``on_commit`` callback at the head of the queue.

    Django forgets the callback when the transaction, or a savepoint around
    the write, rolls back: still being queued means the write is still alive.
    It is queued first, so it runs before any callback of the application,
    which might save the instance again or raise and stop the queue.
    """

    __slots__ = ("committed", "connection", "queue", "savepoints")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.committed = False
        self.queue: Any = None
        self.savepoints: tuple[str, ...] = ()
        if connection is not None:
            self.savepoints = tuple(connection.savepoint_ids)
            connection.run_on_commit.insert(0, (set(connection.savepoint_ids), self, True))
            self.queue = connection.run_on_commit

    def __call__(self) -> None:
        self.committed = True

    def pending(self) -> bool:
        """Return whether the write's transaction is still open (and not rolled back)."""
        if self.connection is None:
            return False
        queue = self.connection.run_on_commit
        if queue is not self.queue:
            # Commit, rollback and savepoint rollback each give the connection a new queue.
            if not any(entry[1] is self for entry in queue):
                return False
            self.queue = queue
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy made elsewhere cannot watch this transaction: unless the write
        # is known to have committed, the copy treats it as rolled back.
        return (_committed_marker if self.committed else _Commit, (None,))

    def __copy__(self) -> _Commit:
        return self

    def __deepcopy__(self, memo: Any) -> _Commit:
        return self


def _committed_marker(connection: Any) -> _Commit:
    marker = _Commit(None)
    marker.committed = True
    return marker


class _Write(NamedTuple):
    """A version ``new`` written over ``old``, alive as long as ``commit`` is."""

    commit: _Commit
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
    _track_write(instance, using, old, new, connection)
    _follow_row(instance, old, new, written)
    options = instance._concurrencymeta  # type: ignore[attr-defined]
    if options.is_root and new != old:
        record_root_write(options.field.model, instance.pk, using, new, new, by_child=False)


def _track_write(instance: Model, using: str, old: Any, new: Any, connection: Any = None) -> None:
    """Put ``new`` on ``instance``, to be given back ``old`` if the write's transaction rolls back."""
    attname = instance._concurrencymeta.field.attname  # type: ignore[attr-defined]
    data = instance.__dict__
    data[attname] = new
    if new == old:
        return
    if connection is None:
        connection = connections[using]
    if connection.in_atomic_block:
        commit = _commit_marker(connection)
        writes: tuple[_Write, ...] = data.get(WRITES, ())
        if writes and writes[-1].commit is commit:
            # Written again in the same savepoint: both writes live or die together.
            data[WRITES] = (*writes[:-1], _Write(commit, writes[-1].old, new))
        else:
            data[WRITES] = (*writes, _Write(commit, old, new))
    elif not connection.get_autocommit():
        # Manual transaction management: there is no way to learn the outcome.
        data[WRITES] = (*data.get(WRITES, ()), _Write(_Commit(None), old, new))


def _commit_marker(connection: Any) -> _Commit:
    """Return the marker of the current savepoint of ``connection``: one per savepoint, not per write."""
    marker: _Commit | None = getattr(connection, "_concurrency_commit", None)
    savepoints = tuple(connection.savepoint_ids)
    if marker is None or marker.committed or marker.savepoints != savepoints or not marker.pending():
        marker = _Commit(connection)
        connection._concurrency_commit = marker
    return marker


def settle(instance: Model) -> None:
    """Give ``instance`` back the versions that rolled-back transactions took from it."""
    data = instance.__dict__
    writes = data.get(WRITES)
    if not writes:
        return
    attname = instance._concurrencymeta.field.attname  # type: ignore[attr-defined]
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


# --- The row an instance was loaded with ---------------------------------------
# A ConditionalVersionField decides in the client whether a save bumps the
# version, from the values its instance was loaded with (``update_version``).
# That is exact because a write checked with ``WHERE version = <old>`` can only
# match the row as it was at that version: every other write that changes a
# checked field moves the version (a save, VersionedQuerySet.update(),
# bulk_update(), the many-to-many touch, the unchecked writes of
# disable_concurrency(), which compare with the row in SQL). Writes that change
# checked fields without moving the version (concurrency_disable_increment(),
# a plain QuerySet.update(), raw SQL) are outside that promise, as they are
# for the version check itself (docs/guide/conditional.rst).
#
# ``from_db`` keeps a reference to the values the instance was built from, not
# a copy, on its ``_state``. The row is trusted only while the instance holds
# the version it was loaded (or last saved by ``save_update``) at: assigning
# another version (fields.py, _VersionAttribute), a rolled-back write and every
# other write forget it, and an instance without it (created, deferred fields,
# unpickled) is compared in SQL.

ROW = "_concurrency_loaded_row"
# Types whose equality in Python is equality of what the database stores, and
# whose values cannot change in place: a loaded value of one of them stands for
# the row's (text compares code point for code point, as the SQL compares
# bytes). Anything else (JSON containers, memoryview, FieldFile, enum members,
# str subclasses, expressions) is compared by the database.
IMMUTABLE_TYPES = frozenset(
    {
        type(None),
        str,
        int,
        bool,
        float,
        Decimal,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        bytes,
    }
)
# model -> {attname: position of its value in the row ``from_db`` was given}
_positions: dict[type[Model], dict[str, int]] = {}
_layouts: dict[type[Model], tuple[int, int]] = {}


class _Row(tuple):  # type: ignore[type-arg]
    """The values a loaded instance was built from, by concrete field; never pickled."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # A memoryview does not pickle, and an unpickled copy may outlive the
        # version it was loaded at: the copy compares in SQL.
        return (_no_row, ())

    def __copy__(self) -> _Row:
        return self

    def __deepcopy__(self, memo: Any) -> _Row:
        return self


def _no_row() -> None:
    return None


def keep_loaded_rows(model: Any) -> None:
    """Make ``model.from_db`` keep the row each instance is built from (see ``loaded_row``)."""
    from_db = model.from_db
    if getattr(from_db, "_concurrency_keeps_row", False):
        return
    build = from_db.__func__

    def from_db_keeping_row(cls: Any, db: str, field_names: Any, values: Sequence[Any]) -> Any:
        instance = build(cls, db, field_names, values)
        # With deferred fields the row is shorter than the model's: never trusted (loaded_row).
        instance._state.__dict__[ROW] = _Row(values)
        return instance

    from_db_keeping_row._concurrency_keeps_row = True  # type: ignore[attr-defined]
    model.from_db = classmethod(from_db_keeping_row)


def row_positions(model: type[Model]) -> dict[str, int]:
    """Return the position of each concrete field's value (by attname) in a row ``model`` keeps."""
    try:
        return _positions[model]
    except KeyError:
        positions = {f.attname: i for i, f in enumerate(model._meta.concrete_fields)}
        _positions[model] = positions
        # The version's position, and the length of a row loaded without deferred fields.
        _layouts[model] = positions[model._concurrencymeta.field.attname], len(positions)  # type: ignore[attr-defined]
        return positions


def loaded_row(instance: Model, version: Any) -> Sequence[Any] | None:
    """Return the row ``instance`` was loaded with, if it holds it at ``version`` (see ``row_positions``)."""
    state = instance._state.__dict__
    row = state.get(ROW)
    if row is None:
        return None
    if type(row) is _Followed:
        row = _apply(instance, row)
        if row is None:
            del state[ROW]
            return None
        state[ROW] = row
    return _at(type(instance), row, version)


def _at(model: type[Model], row: Any, version: Any) -> Sequence[Any] | None:
    """Return ``row`` if it is a whole row of ``model`` at ``version``."""
    layout = _layouts.get(model)
    if layout is None:
        row_positions(model)
        layout = _layouts[model]
    # Shorter when loaded with deferred fields: never trusted.
    if len(row) != layout[1] or row[layout[0]] != version:
        return None
    return row  # type: ignore[no-any-return]


class _Followed(tuple):  # type: ignore[type-arg]
    """``(row, old, written, new)``: a save wrote ``written`` over ``row`` at ``old``.

    Applied when next asked for (``loaded_row``).
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_no_row, ())

    def __copy__(self) -> _Followed:
        return self

    def __deepcopy__(self, memo: Any) -> _Followed:
        return self


def _apply(instance: Model, followed: _Followed) -> _Row | None:
    """Return the row ``followed`` describes, or None if only the database knows it."""
    previous, old, written, new = followed
    if type(previous) is _Followed:
        previous = _apply(instance, previous)
    model = type(instance)
    if previous is None or _at(model, previous, old) is None:
        return None
    positions = _positions[model]
    row = list(previous)
    for field, _model, value in written:
        if type(value) not in IMMUTABLE_TYPES and hasattr(value, "resolve_expression"):
            return None  # only the database knows what it stored
        row[positions[field.attname]] = value
    row[_layouts[model][0]] = new
    return _Row(row)


def forget_loaded_row(instance: Model) -> None:
    """Drop the row ``instance`` was loaded with: it may no longer be the row at its version."""
    instance._state.__dict__.pop(ROW, None)


def _follow_row(instance: Model, old: Any, new: Any, written: list[tuple[Any, Any, Any]] | None) -> None:
    """After a write of ``instance`` from ``old`` to ``new``, keep the row it holds at ``new``, or forget it.

    ``written`` are the values of a checked, incremented save. The row is
    worked out when next asked for (``loaded_row``): most instances are not
    saved twice.
    """
    state = instance._state.__dict__
    row = state.get(ROW)
    if row is None:
        return
    if written is None:
        del state[ROW]
    elif new != old:
        state[ROW] = _Followed((row, old, written, new))
    # else nothing checked changed: the row is the one loaded (unchecked fields are never compared).


# --- Versions of aggregate roots moved in the current transaction -------------
# A root's version moves once per transaction however many of its children are
# written (aggregates.py). What this transaction did to a root row is kept per
# connection, with the same commit marker as a tracked write, so a rolled-back
# savepoint or transaction forgets it.

ROOTS = "_concurrency_root_writes"


class RootWrite(NamedTuple):
    """This transaction moved a root row from ``old`` to ``new``; ``by_child`` for a child write."""

    commit: _Commit
    old: Any
    new: Any
    by_child: bool


def _root_key(model: type[Model], pk: Any) -> tuple[Any, Any]:
    return model, model._meta.pk.to_python(pk)  # type: ignore[union-attr]


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
    commit = _commit_marker(connection)
    entries = tuple(e for e in registry.get(key, ()) if not e.commit.committed and e.commit.pending())
    if entries and entries[-1].commit is commit:
        entries = entries[:-1]
    registry[key] = (*entries, RootWrite(commit, old, new, by_child))


# --- Writes of rows that belong to an aggregate ------------------------------
# Every INSERT, UPDATE and DELETE the ORM sends is compiled by the backend's
# SQLInsertCompiler, SQLUpdateCompiler or SQLDeleteCompiler: save(), queryset
# update()/delete(), bulk_create(), bulk_update(), related managers, cascades
# and SET_NULL alike. The compilers of every connection are subclassed once so
# that a write to a table with a watcher (aggregates.py) runs through it.

_watchers: dict[type[Model], Any] = {}
_ROW = "_concurrency_row"

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
        _tell_row_writes(klass)


def _tell_row_writes(model: Any) -> None:
    """Wrap ``model._do_update``/``_do_insert`` so that the watcher knows the instance being saved."""
    for name in ("_do_update", "_do_insert"):
        method = getattr(model, name)
        if getattr(method, "_concurrency_row", False):
            continue

        def row_write(self: Any, *args: Any, _method_: Any = method, **kwargs: Any) -> Any:
            token = writing.set(self)
            try:
                return _method_(self, *args, **kwargs)
            finally:
                writing.reset(token)

        row_write._concurrency_row = True  # type: ignore[attr-defined]
        setattr(model, name, row_write)


def is_row_hook(method: Any) -> bool:
    """Return whether ``method`` is the ``_do_update``/``_do_insert`` wrapper of ``watch_writes``."""
    return bool(getattr(method, "_concurrency_row", False))


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
    cell = _writes.get()
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
# written, it stays, so a partial save never commits.


class _Writes:
    """Whether a save (and the saves around it) has changed rows yet."""

    __slots__ = ("outer", "wrote")

    def __init__(self, outer: _Writes | None) -> None:
        self.outer = outer
        self.wrote = False

    def note(self) -> None:
        cell: _Writes | None = self
        while cell is not None and not cell.wrote:
            cell.wrote = True
            cell = cell.outer


_writes: contextvars.ContextVar[_Writes | None] = contextvars.ContextVar("concurrency_writes", default=None)


def _harmless(error: BaseException) -> bool:
    """Return whether ``error`` is a refusal raised before the database failed anything."""
    if isinstance(error, VersionNotLoadedError):
        return True
    return type(error) in (RecordModifiedError, RecordDeletedError)


def keep_transaction_usable(model: Any) -> None:
    """Wrap ``model.save_base`` and ``model.delete`` so a refusal that wrote nothing keeps the transaction."""
    for name in ("save_base", "delete"):
        method = getattr(model, name)
        if getattr(method, "_concurrency_usable", False):
            continue
        setattr(model, name, _usable(method, name))


def _usable(method: Any, name: str) -> Any:
    position = 4 if name == "save_base" else 1  # where ``using`` is among positional arguments

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        cell = _Writes(_writes.get())
        token = _writes.set(cell)
        using = kwargs.get("using") or (args[position - 1] if len(args) >= position else None)
        using = using or router.db_for_write(type(self), instance=self)
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
                connection.rollback_exc = None  # type: ignore[attr-defined]
            raise
        finally:
            _writes.reset(token)

    wrapper._concurrency_usable = True  # type: ignore[attr-defined]
    return wrapper


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


# --- end ------------------------------------------------------------------------


def stored_version(instance: Any, using: str) -> list[Any]:
    """Return ``[version]`` of the row of ``instance`` as ``using`` holds it now, ``[]`` if it is gone."""
    field = instance._concurrencymeta.field
    rows = field.model._base_manager.using(using).filter(pk=instance.pk)
    return list(rows.values_list(field.attname, flat=True)[:1])


def raise_conflict(instance: Any, version: Any, using: str) -> NoReturn:
    """Raise the error for a refused write of ``instance`` at ``version``."""
    current = stored_version(instance, using)
    cls = RecordModifiedError if current else RecordDeletedError
    # django-concurrency's switch also skipped the check: say why it did not here.
    message = (cls.increment_disabled_message,) if current and increment_switched_off(instance) else ()
    error = cls(
        *message,
        target=instance,
        version=version,
        db_version=current[0] if current else None,
    )
    conflict_detected.send(
        sender=type(instance),
        instance=instance,
        version=version,
        db_version=error.db_version,
        deleted=not current,
    )
    if conf.CALLBACK != "concurrency.views.callback":
        callback = import_string(conf.CALLBACK) if isinstance(conf.CALLBACK, str) else conf.CALLBACK
        # A callback may raise its own exception; returning never turns the
        # refused write into a success or an INSERT.
        callback(instance)
    raise error


def check_delete(
    sender: type[Model],
    instance: Any,
    using: str,
    origin: Any = None,
    **kwargs: Any,
) -> None:
    """Refuse the deletion of a stale instance (a ``pre_delete`` receiver).

    Runs inside the collector's transaction, before anything is deleted. A
    no-op ``UPDATE ... SET version = version WHERE pk AND version`` both tests
    the version and locks the row until the DELETE, on every backend.
    Cascaded and queryset deletions are not checked: only the instance whose
    ``delete()`` was called.
    """
    if origin is not instance or not is_checked(instance):
        return
    field = instance._concurrencymeta.field
    version, checked = held_version(instance, field, using)
    if not checked:
        return
    base_qs = field.model._base_manager.using(using)
    rows = _run_update(
        base_qs,
        using,
        instance.pk,
        [(field, None, F(field.attname))],
        field,
        version,
        None,
    )
    if rows:
        return
    exists = base_qs.filter(pk=instance.pk).exists()
    if exists:
        raise_conflict(instance, version, using)
    # Already deleted by someone else: deleting again is what Django does.


# -- Versioned bulk_update: the same compare-and-swap, one statement per batch --


class Conflict(NamedTuple):
    """A row a bulk write refused: the stale instance and what the database holds."""

    instance: Model
    version: Any
    db_version: Any
    deleted: bool


# (instance, version it holds, version to write, whether its version is checked)
_Plan = list[tuple[Model, Any, Any, bool]]


def bulk_save_update(
    queryset: QuerySet,
    objs: Sequence[Model],
    fields: Sequence[Field],
    batch_size: int | None,
    all_or_nothing: bool,
) -> tuple[int, list[Conflict]]:
    """Write ``fields`` of ``objs`` with one conditional UPDATE per batch.

    Each batch is ``UPDATE t SET f = CASE WHEN pk = .. THEN .. END, ...,
    version = CASE ... END WHERE (pk = .. AND version = ..) OR ...``. The rows
    it did not match are the conflicts; learning which ones costs nothing
    where the backend has ``UPDATE ... RETURNING`` and a savepoint per batch
    where it has not (MariaDB/MySQL). With ``all_or_nothing`` one conflict
    rolls every batch back. Return how many rows were written and the
    conflicts; ``conflict_detected`` is sent once per conflict, after the
    transaction, and written instances hold their new versions.
    """
    field = queryset.model._concurrencymeta.field
    attname = field.attname
    using = queryset.db
    connection = connections[using]
    plan: _Plan = []
    reread: list[Model] = []
    out_of_range: list[Model] = []
    for obj in objs:
        old, checked = _loaded_version(obj, field)
        if checked and not storable(old):
            # A version no row can hold: refused like any stale row, without SQL.
            out_of_range.append(obj)
            continue
        bump = is_incremented(obj)
        new = field.update_version(obj, old, [(f, None, getattr(obj, f.attname)) for f in fields], bump)
        if bump and not checked and not field.version_from_db:
            # As in save_update(): move past whatever the row holds.
            new = Greatest(F(attname) + 1, Value(new))
        if field.version_from_db or (bump and not checked):
            reread.append(obj)
        plan.append((obj, old, new, checked))
    # Parameters per row: WHEN pk = %s THEN %s for each field and the version,
    # and (pk = %s AND version = %s) in the WHERE clause.
    per_row = 2 * (len(fields) + 2)
    max_batch = connection.ops.bulk_batch_size([queryset.model._meta.pk] * per_row, objs)
    size = min(batch_size, max_batch) if batch_size else max_batch
    pk: Any = queryset.model._meta.pk
    written: _Plan = []
    refused: _Plan = []
    known: dict[Any, Any] = {}
    read_back: dict[Any, Any] = {}
    with transaction.atomic(using=using):
        for start in range(0, len(plan), size):
            done, stale = _bulk_batch(queryset, plan[start : start + size], fields, field, known)
            written += done
            refused += stale
        # One query for the versions of all refused rows the batches did not read.
        unknown = [p[0] for p in refused if pk.to_python(p[0].pk) not in known]
        if unknown:
            known.update(_db_versions(queryset, unknown, everywhere=True))
        refused += [(obj, getattr(obj, attname), None, True) for obj in out_of_range]
        if refused and all_or_nothing:
            transaction.set_rollback(True, using=using)
        elif reread:
            read_back = _db_versions(queryset, reread, everywhere=True)
    if refused and all_or_nothing:
        written = []
    conflicts = []
    for obj, old, _new, _checked in refused:
        key = pk.to_python(obj.pk)
        conflicts.append(Conflict(obj, old, known.get(key), key not in known))
    reread_ids = {id(obj) for obj in reread}
    for obj, old, new, _checked in written:
        stored = read_back[pk.to_python(obj.pk)] if id(obj) in reread_ids else new
        set_written_version(obj, using, old, stored)
    for conflict in conflicts:
        conflict_detected.send(
            sender=type(conflict.instance),
            instance=conflict.instance,
            version=conflict.version,
            db_version=conflict.db_version,
            deleted=conflict.deleted,
        )
    return len(written), conflicts


def _bulk_batch(
    queryset: QuerySet,
    plan: _Plan,
    fields: Sequence[Field],
    field: VersionField,
    known: dict[Any, Any],
    retry: bool = True,
) -> tuple[_Plan, _Plan]:
    """Run one batch; return the entries written and the refused ones (checked, not written).

    Versions of rows this had to read anyway are put in ``known``.
    """
    using = queryset.db
    connection = connections[using]
    query: Any = queryset.query.chain(UpdateQuery)
    alias = query.get_initial_alias()
    pk: Any = queryset.model._meta.pk
    pk_col = pk.get_col(alias)
    keys = [pk.get_db_prep_value(obj.pk, connection) for obj, *_ in plan]
    casting = connection.features.requires_casted_case_in_updates
    values: list[tuple[Any, Any, Any]] = []
    # The version first in the SET clause, as in save_update().
    for target in (field, *fields):
        column = [new if target is field else getattr(obj, target.attname) for obj, _old, new, _c in plan]
        case: Any
        if hasattr(target, "get_placeholder") or any(hasattr(v, "resolve_expression") for v in column):
            # Expressions and fields with their own placeholders: Django's way.
            whens = [
                When(
                    Exact(pk_col, obj.pk),
                    then=v if hasattr(v, "resolve_expression") else Value(v, output_field=target),
                )
                for (obj, *_), v in zip(plan, column, strict=True)
            ]
            case = Case(*whens, output_field=target)
        else:
            prepped = [target.get_db_prep_save(v, connection) for v in column]
            case = _KeyedCase(pk_col, keys, prepped, target)
        if casting:
            case = Cast(case, output_field=target)
        values.append((target, None, case))
    query.add_update_fields(values)
    version_col = field.get_col(alias)
    query.where.add(
        _KeyedRows(pk_col, version_col, [(k, p[1], p[3]) for k, p in zip(keys, plan, strict=True)], field),
        AND,
    )
    compiler = query.get_compiler(using)
    if _can_update_returning(connection):

        def run() -> list[Any]:
            sql, params = compiler.as_sql()
            with connection.cursor() as cursor:
                cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(pk.column)}", params)
                return cursor.fetchall()  # type: ignore[no-any-return]

        returned = {pk.to_python(row[0]) for row in run_watched(compiler, "update", run)}
        if len(returned) == len(plan):
            return plan, []
        done = [p for p in plan if pk.to_python(p[0].pk) in returned]
        return done, [p for p in plan if p[3] and pk.to_python(p[0].pk) not in returned]
    if not retry:
        # The rows are locked and known to be current.
        compiler.execute_sql(ROW_COUNT)
        return plan, []
    sid = savepoint_create(using)
    if compiler.execute_sql(ROW_COUNT) == len(plan):
        transaction.savepoint_commit(sid, using)
        return plan, []
    # No RETURNING for UPDATE here: undo the batch, lock its rows and learn
    # their versions, then write only the rows that are still current.
    transaction.savepoint_rollback(sid, using)
    current = _db_versions(queryset, [p[0] for p in plan], lock=True)
    current_plan = []
    for entry in plan:
        key = pk.to_python(entry[0].pk)
        if key in current and (not entry[3] or current[key] == entry[1]):
            current_plan.append(entry)
    if current_plan:
        _bulk_batch(queryset, current_plan, fields, field, known, retry=False)
    written = {pk.to_python(p[0].pk) for p in current_plan}
    stale = [p for p in plan if p[3] and pk.to_python(p[0].pk) not in written]
    # Rows missing here are gone or outside the queryset's filter: the caller asks the table.
    known.update((key, current[key]) for key in (pk.to_python(p[0].pk) for p in stale) if key in current)
    return current_plan, stale


class _KeyedCase(Expression):
    """``CASE <pk> WHEN %s THEN %s ... END`` over values already prepared for the database.

    Django's ``Case(When(pk=..., then=Value(...)))`` copies and resolves two
    expressions per row, twice; a bulk write of 1,000 rows spends most of its
    time there. This compiles in one pass.
    """

    def __init__(self, key: Any, keys: list[Any], values: list[Any], output_field: Field) -> None:
        super().__init__(output_field=output_field)
        self.key, self.keys, self.values = key, keys, values

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _KeyedCase:
        return self

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        key_sql, key_params = compiler.compile(self.key)
        params = list(key_params)
        for key, value in zip(self.keys, self.values, strict=True):
            params += (key, value)
        return f"CASE {key_sql}{' WHEN %s THEN %s' * len(self.keys)} END", params


class _KeyedRows(Expression):
    """``(pk = %s AND version = %s) OR ...``: the rows a bulk write may touch.

    A row whose version is not checked is named by its pk alone.
    """

    conditional = True

    def __init__(self, key: Any, version: Any, rows: list[tuple[Any, Any, bool]], field: Field) -> None:
        super().__init__(output_field=BooleanField())
        self.key, self.version, self.rows, self.version_field = key, version, rows, field

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _KeyedRows:
        return self

    def get_source_expressions(self) -> list[Any]:
        return [self.key, self.version]

    def set_source_expressions(self, exprs: Any) -> None:
        self.key, self.version = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        key_sql, key_params = compiler.compile(self.key)
        version_sql, version_params = compiler.compile(self.version)
        checked = f"({key_sql} = %s AND {version_sql} = %s)"
        null = f"({key_sql} = %s AND {version_sql} IS NULL)"
        only_key = f"{key_sql} = %s"
        terms: list[str] = []
        params: list[Any] = []
        for key, version, is_checked in self.rows:
            if not is_checked:
                terms.append(only_key)
                params += (*key_params, key)
            elif version is None:
                terms.append(null)
                params += (*key_params, key, *version_params)
            else:
                terms.append(checked)
                version = self.version_field.get_db_prep_value(version, connection)
                params += (*key_params, key, *version_params, version)
        return _balanced_or(terms), params


def _balanced_or(terms: list[str]) -> str:
    """Join ``terms`` with OR as a balanced tree: ``((a OR b) OR (c OR d))``.

    Parsers build ``a OR b OR c ...`` as a chain as deep as it is long, and
    SQLite refuses expressions deeper than 1,000; a balanced tree of a batch
    of any size is a few dozen levels deep. The order of the terms is kept.
    """
    while len(terms) > 1:
        paired = [f"({a} OR {b})" for a, b in zip(terms[::2], terms[1::2], strict=False)]
        if len(terms) % 2:
            paired.append(terms[-1])
        terms = paired
    return f"({terms[0]})" if terms else "(1 = 0)"


def _db_versions(
    queryset: QuerySet, objs: Sequence[Model], lock: bool = False, everywhere: bool = False
) -> dict[Any, Any]:
    """Return the versions of the rows of ``objs`` in ``queryset`` (or the whole table), by pk."""
    field = queryset.model._concurrencymeta.field
    rows = queryset.model._base_manager.using(queryset.db) if everywhere else queryset
    rows = rows.filter(pk__in=[obj.pk for obj in objs]).order_by()
    if lock:
        rows = rows.select_for_update()
    return dict(rows.values_list("pk", field.attname))


# Upserts. bulk_create(update_conflicts=True) overwrites existing rows without
# checking or moving their version, whatever manager it is called through, so
# instances loaded before it could later save over it unseen. Every INSERT is
# compiled through the backend's on_conflict_suffix_sql(), with the inserted
# fields: one versioned field there refuses the upsert before anything is sent.
# (VersionedQuerySet.bulk_create() refuses it earlier, with the same message.)


def upsert_refusal(model: Any) -> NotSupportedError:
    """Return the error for an upsert of rows of a versioned ``model``."""
    return NotSupportedError(
        f"bulk_create(update_conflicts=True) would overwrite rows of {model._meta.label} "
        "without checking or bumping their version, so older instances could save over it. "
        "Create new rows with bulk_create() and update existing ones with bulk_update(), which checks them."
    )


def _guard_upserts(connection: Any, **kwargs: Any) -> None:
    ops = connection.ops
    if getattr(ops, "_concurrency_guarded", False):
        return
    suffix = ops.on_conflict_suffix_sql

    def on_conflict_suffix_sql(fields: Any, on_conflict: Any, *args: Any, **kw: Any) -> Any:
        if on_conflict is OnConflict.UPDATE:
            for field in fields:
                if "_concurrencymeta" in field.model.__dict__ and field is field.model._concurrencymeta.field:
                    raise upsert_refusal(field.model)
        return suffix(fields, on_conflict, *args, **kw)

    ops.on_conflict_suffix_sql = on_conflict_suffix_sql
    ops._concurrency_guarded = True


def _guard_all_upserts(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    _guard_upserts(connection)


def _watch_compilers() -> None:
    """Make every backend hand out watched INSERT/UPDATE/DELETE compilers (see ``watch_writes``).

    On the operations class, not on connections: a query is compiled before
    its thread's connection is opened.
    """
    original = BaseDatabaseOperations.compiler
    if getattr(original, "_concurrency_watched", False):
        return

    def compiler(self: Any, compiler_name: str) -> Any:
        klass = original(self, compiler_name)
        kind = _KINDS.get(compiler_name)
        return klass if kind is None else _watched_compiler(klass, kind)

    compiler._concurrency_watched = True  # type: ignore[attr-defined]
    BaseDatabaseOperations.compiler = compiler  # type: ignore[method-assign]


_watch_compilers()
connection_created.connect(_guard_all_upserts, dispatch_uid="concurrency.guard_upserts")
for _connection in connections.all(initialized_only=True):
    _guard_upserts(_connection)


# Django's private hook. Its signature gained ``returning_fields`` (and its
# result became a list of rows) in 6.0; this is the only code that knows.
if DJANGO_60:

    def _django_update(
        instance: Any,
        base_qs: QuerySet,
        using: str,
        pk_val: Any,
        values: Any,
        update_fields: Any,
        forced_update: Any,
        returning_fields: Any,
    ) -> Rows:
        return Model._do_update(
            instance, base_qs, using, pk_val, values, update_fields, forced_update, returning_fields
        )

    def versioned_do_update(
        self: Any,
        base_qs: QuerySet,
        using: str,
        pk_val: Any,
        values: Any,
        update_fields: Any,
        forced_update: Any,
        returning_fields: Any,
    ) -> Rows:
        """Stand in for ``Model._do_update`` on versioned models."""
        return save_update(
            self, base_qs, using, pk_val, values, update_fields, forced_update, returning_fields
        )

else:

    def _django_update(
        instance: Any,
        base_qs: QuerySet,
        using: str,
        pk_val: Any,
        values: Any,
        update_fields: Any,
        forced_update: Any,
        returning_fields: Any,
    ) -> Rows:
        updated = Model._do_update(instance, base_qs, using, pk_val, values, update_fields, forced_update)  # type: ignore[call-arg]
        return [()] if updated else []

    def versioned_do_update(  # type: ignore[misc]
        self: Any,
        base_qs: QuerySet,
        using: str,
        pk_val: Any,
        values: Any,
        update_fields: Any,
        forced_update: Any,
    ) -> bool:
        """Stand in for ``Model._do_update`` on versioned models."""
        return bool(save_update(self, base_qs, using, pk_val, values, update_fields, forced_update, None))
