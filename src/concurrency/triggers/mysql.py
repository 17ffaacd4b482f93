"""Triggers on MariaDB and MySQL: one BEFORE UPDATE trigger."""

from __future__ import annotations

from .base import BaseTriggerFactory

__all__ = ["TriggerFactory"]


class TriggerFactory(BaseTriggerFactory):
    # IF() is NULL-safe here: a NULL comparison is not true, so OLD + 1 wins.
    sql_create = (
        "CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW "
        "SET NEW.{column} = IF(NEW.{column} > OLD.{column}, NEW.{column}, OLD.{column} + 1)",
    )
    sql_drop = ("DROP TRIGGER IF EXISTS {name}",)
    sql_list = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
