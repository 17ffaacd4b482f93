"""The compare-and-swap write that every other part of the library calls.

Saving a versioned instance is one statement::

    UPDATE t SET ..., version = <new> WHERE t.pk = <pk> AND t.version = <old>

judged by its row count. Only when it matches no row does one more cheap query
tell a conflict (``RecordModifiedError``) from a deletion
(``RecordDeletedError``); a stale instance is never inserted again. A checked
delete is the same statement without a change, run before the DELETE.

The UPDATE is built directly from the model's cached columns instead of going
through ``QuerySet.filter()``: resolving lookups by name is where a naive
compare-and-swap spends its time (see bench/save.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.db.models import BooleanField, Expression, F, Func, Model, Value
from django.db.models.sql.constants import ROW_COUNT
from django.db.models.sql.subqueries import UpdateQuery
from django.db.models.sql.where import AND

from ..compat import DJANGO_60
from .options import VersionFieldHooks, is_checked, is_incremented, options
from .refusal import raise_conflict
from .tracking import set_written_version, version_to_check
from .versions import past_stored
from .watch import run_watched

if TYPE_CHECKING:
    from django.db.models import QuerySet

Rows = list[Any]


class CheckedVersion(int):
    """The version as returned by ``VersionField.pre_save(add=False)``.

    Django asks fields for their values through ``pre_save`` on ordinary saves
    but reads raw attributes during raw (fixture) saves; this marker is how the
    compare-and-swap tells the two apart without another hook.
    """


class VersionIs(Expression):
    """``<version column> = %s``, or ``IS NULL``: the version half of the WHERE clause.

    The SQL of ``Exact``/``IsNull`` lookups, with the value prepared as they
    prepare it, but compiled without resolving (and copying) a lookup on
    every save.
    """

    conditional = True
    output_field = BooleanField()  # One for all: creating a field per save is costly.

    def __init__(self, field: VersionFieldHooks, alias: str, version: Any, connection: Any) -> None:
        self.col = field.get_col(alias)
        self.value = None if version is None else field.get_db_prep_value(version, connection)

    def resolve_expression(self, *args: Any, **kwargs: Any) -> VersionIs:
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


def run_update(
    base_qs: QuerySet,
    using: str,
    pk_val: Any,
    values: list[tuple[Any, Any, Any]],
    version_field: VersionFieldHooks | None,
    version: Any,
    returning_fields: Sequence[Any] | None,
    read_back: VersionFieldHooks | None = None,
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
        query.where.add(VersionIs(version_field, alias, version, connection), AND)
    # Query.get_compiler(using) without looking the connection up again.
    compiler = connection.ops.compiler(query.compiler)(query, connection, using, True)
    if read_back is not None:
        fields = [*(returning_fields or ()), read_back]
        return run_watched(compiler, "update", lambda: _update_read_back(compiler, base_qs, pk_val, fields))
    if returning_fields:
        return compiler.execute_returning_sql(returning_fields)
    return [()] * compiler.execute_sql(ROW_COUNT)


# --- Versions decided by the database (VersionField.version_from_db) --------
# A trigger, or an SQL expression in the SET clause, decides the new version;
# the value stored is read back, never assumed.


def can_update_returning(connection: Any) -> bool:
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
    if final and can_update_returning(connection):
        returning, converters = _returning(compiler, fields)
        sql, params = compiler.as_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql + returning, params)
            # The wrapper's fetchall() builds an error-wrapping function per call.
            with connection.wrap_database_errors:
                rows = cursor.cursor.fetchall()
        if converters:
            return [tuple(row) for row in compiler.apply_converters(rows, converters)]
        return rows
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


def touch(instance: Model, using: str) -> None:
    """Bump the version of a saved ``instance`` alone, checked, and read it back.

    For changes that do not go through ``save()`` but must still move the
    version, such as a checked many-to-many membership of a
    ``ConditionalVersionField``.
    """
    field = options(instance).field
    attname = field.attname
    old, checked = version_to_check(instance, field, using)
    new = F(attname) + 1 if is_incremented(instance) else F(attname)
    base_qs = field.model._base_manager.using(using)
    rows = run_update(
        base_qs, using, instance.pk, [(field, None, new)], field if checked else None, old, None, field
    )
    if rows:
        set_written_version(instance, using, old, rows[0][-1])
    elif checked:
        raise_conflict(instance, old, using)


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
    meta = options(instance)
    field = meta.field
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

    old, checked = version_to_check(instance, field, using)
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
        new = past_stored(field, new)
        from_db = True
    # Unchecked and not incremented: keep the row's version, which this
    # (possibly stale) instance's would move back.
    stored = F(attname) if not checked and new is old else new
    # First in the SET clause: MySQL evaluates assignments left to right, and an
    # expression computing the version must see the row's old values.
    new_values.insert(0, (field, None, stored))
    rows = run_update(
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
    field = options(instance).field
    version, checked = version_to_check(instance, field, using)
    if not checked:
        return
    base_qs = field.model._base_manager.using(using)
    rows = run_update(
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
