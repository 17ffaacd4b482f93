"""Triggers on PostgreSQL: a BEFORE UPDATE trigger and its function."""

from __future__ import annotations

from .base import BaseTriggerFactory

__all__ = ["TriggerFactory"]


class TriggerFactory(BaseTriggerFactory):
    # A BEFORE trigger changes the row being written, so UPDATE ... RETURNING
    # reports the version it set.
    sql_create = (
        "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $concurrency$ "
        "BEGIN "
        "IF NEW.{column} IS NULL OR NEW.{column} <= OLD.{column} "
        "THEN NEW.{column} := OLD.{column} + 1; END IF; "
        "RETURN NEW; "
        "END; $concurrency$",
        "CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()",
    )
    sql_drop = (
        "DROP TRIGGER IF EXISTS {name} ON {table}",
        "DROP FUNCTION IF EXISTS {function}()",
    )
    sql_list = (
        "SELECT t.tgname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND n.nspname = ANY (current_schemas(false))"
    )
