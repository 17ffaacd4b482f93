"""Triggers on SQLite: an AFTER UPDATE trigger that updates the row again."""

from __future__ import annotations

from .base import BaseTriggerFactory

__all__ = ["TriggerFactory"]


class TriggerFactory(BaseTriggerFactory):
    # SQLite triggers cannot change NEW, hence AFTER UPDATE and a second
    # UPDATE; its WHEN clause makes it stand aside when the statement raised
    # the version itself, and stops any recursion.
    sql_create = (
        "CREATE TRIGGER {name} AFTER UPDATE ON {table} FOR EACH ROW "
        "WHEN NEW.{column} IS NULL OR NEW.{column} <= OLD.{column} "
        "BEGIN UPDATE {table} SET {column} = OLD.{column} + 1 WHERE {pk} = NEW.{pk}; END",
    )
    sql_drop = ("DROP TRIGGER IF EXISTS {name}",)
    sql_list = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
