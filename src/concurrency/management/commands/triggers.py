"""``manage.py triggers list|create|drop [--database ALIAS]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.db.utils import NotSupportedError

from ...triggers import create_triggers, drop_triggers, factory, get_trigger_name, trigger_fields


class Command(BaseCommand):
    help = "List, create or drop the database triggers of TriggerVersionField."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "create", "drop"], help="What to do.")
        parser.add_argument(
            "--database",
            "-d",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="A database to work on (repeatable); default: every database in DATABASES.",
        )

    def handle(self, *args: Any, action: str, databases: str | list[str] | None, **options: Any) -> None:
        if isinstance(databases, str):
            # call_command("triggers", ..., database="default"): one alias, as with Django's commands.
            databases = [databases]
        aliases = databases or list(connections)
        unknown = [alias for alias in aliases if alias not in connections]
        if unknown:
            raise CommandError(f"Unknown database {', '.join(map(repr, unknown))}.")
        try:
            getattr(self, f"_{action}")(aliases)
        except (NotSupportedError, DatabaseError) as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, aliases: list[str]) -> None:
        for alias in aliases:
            labels = {get_trigger_name(f): f"{f.model._meta.label}.{f.name}" for f in trigger_fields(alias)}
            self.stdout.write(f"Database: {alias}")
            for name in factory(connections[alias]).names():
                self.stdout.write(f"    {name}  {labels.get(name, '(no model)')}")

    def _create(self, aliases: list[str]) -> None:
        for alias, done in create_triggers(aliases).items():
            self.stdout.write(f"Database: {alias}")
            for field, created in done:
                state = self.style.SUCCESS("created") if created else "exists"
                self.stdout.write(
                    f"    {get_trigger_name(field)}  {field.model._meta.label}.{field.name}  {state}"
                )

    def _drop(self, aliases: list[str]) -> None:
        for alias, done in drop_triggers(aliases).items():
            self.stdout.write(f"Database: {alias}")
            for field, existed in done:
                state = self.style.SUCCESS("dropped") if existed else "absent"
                self.stdout.write(
                    f"    {get_trigger_name(field)}  {field.model._meta.label}.{field.name}  {state}"
                )
