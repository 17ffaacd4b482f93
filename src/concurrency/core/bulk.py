"""Versioned ``bulk_update()``: the same compare-and-swap, one statement per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import connections, transaction
from django.db.models import BooleanField, Case, Expression, Model, Value, When
from django.db.models.functions import Cast
from django.db.models.lookups import Exact
from django.db.models.sql.constants import ROW_COUNT
from django.db.models.sql.subqueries import UpdateQuery
from django.db.models.sql.where import AND

from ..compat import savepoint_create
from .options import VersionFieldHooks, is_incremented, options
from .refusal import announce
from .tracking import loaded_version, set_written_version
from .update import can_update_returning
from .versions import current_versions, past_stored, storable
from .watch import run_watched

if TYPE_CHECKING:
    from django.db.models import Field, QuerySet


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
    conflicts; each conflict is announced (``refusal.announce``) once, after the
    transaction, and written instances hold their new versions.
    """
    field = options(queryset.model).field
    attname = field.attname
    using = queryset.db
    connection = connections[using]
    plan: _Plan = []
    reread: list[Model] = []
    out_of_range: list[Model] = []
    for obj in objs:
        old, checked = loaded_version(obj, field)
        if checked and not storable(old):
            # A version no row can hold: refused like any stale row, without SQL.
            out_of_range.append(obj)
            continue
        bump = is_incremented(obj)
        new = field.update_version(obj, old, [(f, None, getattr(obj, f.attname)) for f in fields], bump)
        if bump and not checked and not field.version_from_db:
            # As in save_update(): move past whatever the row holds.
            new = past_stored(field, new)
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
            known.update(current_versions(queryset.model, [o.pk for o in unknown], using))
        refused += [(obj, getattr(obj, attname), None, True) for obj in out_of_range]
        if refused and all_or_nothing:
            transaction.set_rollback(True, using=using)
        elif reread:
            read_back = current_versions(queryset.model, [o.pk for o in reread], using)
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
        announce(conflict.instance, conflict.version, conflict.db_version, conflict.deleted)
    return len(written), conflicts


def _bulk_batch(
    queryset: QuerySet,
    plan: _Plan,
    fields: Sequence[Field],
    field: VersionFieldHooks,
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
    targets: list[Any] = [field, *fields]
    for target in targets:
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
    if can_update_returning(connection):

        def run() -> list[Any]:
            sql, params = compiler.as_sql()
            with connection.cursor() as cursor:
                cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(pk.column)}", params)
                return cursor.fetchall()

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
    current = current_versions(queryset.model, [p[0].pk for p in plan], using, lock=True, queryset=queryset)
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

    def __init__(self, key: Any, version: Any, rows: list[tuple[Any, Any, bool]], field: Any) -> None:
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
