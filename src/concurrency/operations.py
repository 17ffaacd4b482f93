"""Migration operations that create and drop the triggers of ``TriggerVersionField``.

Put them in a migration after the one that adds the field::

    from concurrency.operations import CreateTrigger

    operations = [CreateTrigger("article", "version")]

They use the field as the migration state has it (table, column,
``trigger_name``), run through the schema editor (so ``sqlmigrate`` shows
their SQL), honour database routers and are reversible.
"""

from __future__ import annotations

from typing import Any

from django.db.migrations.operations.base import Operation

__all__ = ["CreateTrigger", "DropTrigger"]


class _TriggerOperation(Operation):
    reduces_to_sql = True
    reversible = True

    def __init__(self, model_name: str, field_name: str) -> None:
        self.model_name = model_name
        self.field_name = field_name

    @property
    def model_name_lower(self) -> str:
        return self.model_name.lower()

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return type(self).__name__, [], {"model_name": self.model_name, "field_name": self.field_name}

    def state_forwards(self, app_label: str, state: Any) -> None:
        """Change nothing: a trigger is not part of the model state."""

    def _run(self, create: bool, app_label: str, schema_editor: Any, state: Any) -> None:
        from .triggers import factory

        model = state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        field = model._meta.get_field(self.field_name)
        if not getattr(field, "needs_trigger", False):
            raise TypeError(f"{model._meta.label}.{self.field_name} is not a TriggerVersionField")
        maker = factory(schema_editor.connection)
        for sql in maker.create_sql(field) if create else maker.drop_sql(field):
            schema_editor.execute(sql, params=None)

    def references_model(self, name: str, app_label: str) -> bool:
        return name.lower() == self.model_name_lower

    def references_field(self, model_name: str, name: str, app_label: str) -> bool:
        return model_name.lower() == self.model_name_lower and name.lower() == self.field_name.lower()

    def reduce(self, operation: Operation, app_label: str) -> Any:
        # Never merged away by squashmigrations' optimizer.
        return False


class CreateTrigger(_TriggerOperation):
    """Create (or replace) the trigger of a ``TriggerVersionField``; reversing drops it."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(True, app_label, schema_editor, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(False, app_label, schema_editor, from_state)

    def describe(self) -> str:
        return f"Create the version trigger of {self.model_name}.{self.field_name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"create_trigger_{self.model_name_lower}_{self.field_name.lower()}"


class DropTrigger(_TriggerOperation):
    """Drop the trigger of a ``TriggerVersionField`` (and its function); reversing creates it."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(False, app_label, schema_editor, from_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(True, app_label, schema_editor, to_state)

    def describe(self) -> str:
        return f"Drop the version trigger of {self.model_name}.{self.field_name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"drop_trigger_{self.model_name_lower}_{self.field_name.lower()}"
