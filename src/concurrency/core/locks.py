"""Reading and locking rows by key: the statements ``verify_unchanged`` and ``lock_on_retry`` send.

Hand-written SQL, built once per call: binding a hundred keys through the ORM
costs the client more than the lock costs the server.
"""

from __future__ import annotations

from typing import Any

from django.db.models import AutoField, BigAutoField, BigIntegerField, IntegerField, Model, SmallAutoField


class GoneError(Exception):
    """A row to lock no longer exists."""


# Key fields whose values are plain ints, prepared as they are (their subclasses may convert).
_INTEGER_KEY_TYPES = (AutoField, BigAutoField, SmallAutoField, IntegerField, BigIntegerField)
# What a bigint[] constant holds; a key outside it cannot match a row, and stays in an IN list.
_BIGINT = (-(2**63), 2**63 - 1)


# --- Holding the verified rows until the transaction ends, without writing them ---
# PostgreSQL, MariaDB and MySQL: a shared row lock taken by the SELECT whose
# versions are compared. Other writers of the rows wait for the transaction;
# other readers, verifying ones too, do not. A row changed meanwhile is read as
# it is now (under READ COMMITTED, a SELECT that waited for a writer returns the
# row the writer left; InnoDB's locking reads see the latest version, not the
# snapshot; PostgreSQL's REPEATABLE READ refuses with a serialization failure).
# SQLite has no row locks: it takes its one write lock, which BEGIN IMMEDIATE
# has already taken; an UPDATE that matches no row takes it in a DEFERRED
# transaction without running any trigger.

_SHARE_LOCK = {"PostgreSQL": " FOR SHARE", "MariaDB": " LOCK IN SHARE MODE", "MySQL": " FOR SHARE"}


def sql_select_versions(
    connection: Any, model: type[Model], field: Any, keys: list[Any], integer: bool = False
) -> tuple[str, list[Any] | None]:
    """Return ``SELECT pk, version FROM table WHERE pk IN (…)`` and its parameters."""
    qn = connection.ops.quote_name
    where, params = sql_where_keys(connection, model, keys, integer)
    key = qn(model._meta.pk.column)
    return f"SELECT {key}, {qn(field.column)} FROM {qn(model._meta.db_table)} WHERE {where}", params


def integer_keys(model: type[Model]) -> bool:
    """Return whether the keys of ``model`` are Django's own integers: ints as loaded, no conversion."""
    return type(model._meta.pk) in _INTEGER_KEY_TYPES


def sql_where_keys(
    connection: Any, model: type[Model], keys: list[Any], integer: bool
) -> tuple[str, list[Any] | None]:
    """Return ``pk IN (…)`` for prepared ``keys`` and its parameters (``lock_rows`` too).

    ``integer``: the keys are ints, written into the SQL as digits: a third of
    the client's work of binding them (as parameters or as one array), and
    SQLite limits how many parameters a statement may have.
    """
    key = connection.ops.quote_name(model._meta.pk.column)
    if integer:
        digits = ",".join(map(str, keys))
        many = len(keys) > 1
        if many and connection.vendor == "postgresql" and _BIGINT[0] <= min(keys) <= max(keys) <= _BIGINT[1]:
            # One array constant: PostgreSQL parses and plans it in a third less time than an IN list.
            return f"{key} = ANY('{{{digits}}}'::bigint[])", None
        return f"{key} IN ({digits})", None
    if connection.vendor == "postgresql":
        # One array parameter: binding a hundred costs the client more than the lock costs the server.
        return f"{key} = ANY(%s)", [keys]
    return f"{key} IN ({', '.join(['%s'] * len(keys))})", keys


def sql_share_lock(connection: Any) -> str:
    """Return the clause that makes a SELECT hold its rows until the transaction ends."""
    if connection.vendor == "sqlite":
        return ""
    try:
        return _SHARE_LOCK[connection.display_name]
    except KeyError:
        # Another backend: an exclusive lock, which also writes nothing.
        return " " + connection.ops.for_update_sql()


def needs_write_lock(connection: Any) -> bool:
    """Return whether verifying on SQLite must take the write lock the transaction lacks."""
    if connection.vendor != "sqlite" or connection.get_autocommit():
        return False
    return not (connection.in_atomic_block and connection.transaction_mode in ("IMMEDIATE", "EXCLUSIVE"))


def sql_write_lock(connection: Any, model: type[Model], field: Any) -> str:
    """Return an UPDATE that takes SQLite's write lock and changes no row."""
    qn = connection.ops.quote_name
    column = qn(field.column)
    return f"UPDATE {qn(model._meta.db_table)} SET {column} = {column} WHERE 1 = 0"


def prepared_keys(connection: Any, model: type[Model], keys: list[Any]) -> tuple[list[Any], bool]:
    """Return ``keys`` without repeats, prepared for ``sql_where_keys``, and whether they are integers."""
    pk: Any = model._meta.pk
    integer = integer_keys(model)
    if integer and set(map(type, keys)) <= {int}:
        return list(dict.fromkeys(keys)), True
    keys = list(dict.fromkeys(key if integer and type(key) is int else pk.to_python(key) for key in keys))
    if not integer:
        keys = [pk.get_db_prep_value(key, connection, prepared=True) for key in keys]
    return keys, integer


def lock_rows(connection: Any, model: type[Model], keys: list[Any]) -> None:
    """Lock the rows ``keys`` of ``model`` (``SELECT pk … FOR UPDATE``); ``GoneError`` if one is gone.

    Outside a transaction, or on a database without row locks, only check that they exist.
    """
    pk: Any = model._meta.pk
    keys, integer = prepared_keys(connection, model, keys)
    where, params = sql_where_keys(connection, model, keys, integer)
    qn = connection.ops.quote_name
    sql = f"SELECT {qn(pk.column)} FROM {qn(model._meta.db_table)} WHERE {where}"
    if connection.in_atomic_block and connection.features.has_select_for_update:
        sql += " " + connection.ops.for_update_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if len(cursor.fetchall()) != len(keys):
            raise GoneError
