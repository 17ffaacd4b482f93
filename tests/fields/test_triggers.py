"""TriggerVersionField: the database keeps the version, whoever writes the row."""

from __future__ import annotations

import io
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import call_command
from django.db import connection, connections, models, transaction
from django.db.backends.mysql.operations import DatabaseOperations as MySQLOperations
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.db.migrations.state import ProjectState
from django.db.models import F
from django.db.utils import NotSupportedError
from django.test import TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext, isolate_apps

from concurrency import triggers
from concurrency.api import concurrency_disable_increment, disable_concurrency
from concurrency.checks import check_triggers, check_triggers_exist
from concurrency.exceptions import RecordModifiedError
from concurrency.fields import TriggerVersionField
from concurrency.operations import CreateTrigger, DropTrigger
from concurrency.triggers import get_trigger_name
from concurrency.triggers.mysql import TriggerFactory as MySQLFactory
from concurrency.triggers.postgresql import TriggerFactory as PostgreSQLFactory
from concurrency.triggers.sqlite import TriggerFactory as SQLiteFactory
from tests.demo.models import NamedTriggerRow, TriggerRow
from tests.support.races import run_together

ROW_TRIGGER = "concurrency_demo_triggerrow_version"
NAMED_TRIGGER = "concurrency_named_row_version"
FIELD = TriggerRow._meta.get_field("version")


def _writes(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def _db_version(pk: Any) -> int:
    return TriggerRow.objects.values_list("version", flat=True).get(pk=pk)


def _raw_update(sql: str, *params: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql.format(table=connection.ops.quote_name(TriggerRow._meta.db_table)), params)


# --- Rendered SQL, as strings, for every vendor (no database needed) ---------


def _renderer(cls: type, ops_cls: type, vendor: str) -> Any:
    return cls(SimpleNamespace(ops=ops_cls(None), vendor=vendor, alias="x"))


def test_postgresql_sql() -> None:
    maker = _renderer(PostgreSQLFactory, PostgreSQLWrapper.ops_class, "postgresql")
    assert maker.create_sql(FIELD) == [
        'DROP TRIGGER IF EXISTS "concurrency_demo_triggerrow_version" ON "demo_triggerrow"',
        'DROP FUNCTION IF EXISTS "concurrency_demo_triggerrow_version"()',
        'CREATE FUNCTION "concurrency_demo_triggerrow_version"() RETURNS trigger LANGUAGE plpgsql AS '
        '$concurrency$ BEGIN IF NEW."version" IS NULL OR NEW."version" <= OLD."version" THEN '
        'NEW."version" := OLD."version" + 1; END IF; RETURN NEW; END; $concurrency$',
        'CREATE TRIGGER "concurrency_demo_triggerrow_version" BEFORE UPDATE ON "demo_triggerrow" '
        'FOR EACH ROW EXECUTE FUNCTION "concurrency_demo_triggerrow_version"()',
    ]
    assert maker.drop_sql(FIELD) == [
        'DROP TRIGGER IF EXISTS "concurrency_demo_triggerrow_version" ON "demo_triggerrow"',
        'DROP FUNCTION IF EXISTS "concurrency_demo_triggerrow_version"()',
    ]


def test_mysql_sql() -> None:
    maker = _renderer(MySQLFactory, MySQLOperations, "mysql")
    assert maker.create_sql(FIELD) == [
        "DROP TRIGGER IF EXISTS `concurrency_demo_triggerrow_version`",
        "CREATE TRIGGER `concurrency_demo_triggerrow_version` BEFORE UPDATE ON `demo_triggerrow` "
        "FOR EACH ROW SET NEW.`version` = "
        "IF(NEW.`version` > OLD.`version`, NEW.`version`, OLD.`version` + 1)",
    ]
    assert maker.drop_sql(FIELD) == ["DROP TRIGGER IF EXISTS `concurrency_demo_triggerrow_version`"]


def test_sqlite_sql() -> None:
    maker = _renderer(SQLiteFactory, SQLiteWrapper.ops_class, "sqlite")
    assert maker.create_sql(FIELD) == [
        'DROP TRIGGER IF EXISTS "concurrency_demo_triggerrow_version"',
        'CREATE TRIGGER "concurrency_demo_triggerrow_version" AFTER UPDATE ON "demo_triggerrow" FOR EACH ROW '
        'WHEN NEW."version" IS NULL OR NEW."version" <= OLD."version" '
        'BEGIN UPDATE "demo_triggerrow" SET "version" = OLD."version" + 1 WHERE "id" = NEW."id"; END',
    ]
    assert maker.drop_sql(FIELD) == ['DROP TRIGGER IF EXISTS "concurrency_demo_triggerrow_version"']


def test_names_are_prefixed_and_trigger_name_is_honoured() -> None:
    assert get_trigger_name(FIELD) == ROW_TRIGGER == FIELD.trigger_name
    assert get_trigger_name(NamedTriggerRow._meta.get_field("version")) == NAMED_TRIGGER
    field = TriggerVersionField(trigger_name="concurrency_mine")
    field.set_attributes_from_name("version")
    field.model = TriggerRow
    assert get_trigger_name(field) == "concurrency_mine"  # not prefixed twice


@isolate_apps("tests.demo")
def test_long_names_are_capped_deterministically_like_index_names() -> None:
    class Long(models.Model):
        version = TriggerVersionField(db_column="c" * 60)

        class Meta:
            app_label = "demo"
            db_table = "t" * 60

    class Unicode(models.Model):
        version = TriggerVersionField(trigger_name="é" * 40)

        class Meta:
            app_label = "demo"

    long_name = get_trigger_name(Long._meta.get_field("version"))
    assert long_name.startswith("concurrency_ttt") and len(long_name) == 63
    assert long_name == get_trigger_name(Long._meta.get_field("version"))
    unicode_name = get_trigger_name(Unicode._meta.get_field("version"))
    assert unicode_name.startswith("concurrency_é") and len(unicode_name.encode()) <= 63
    assert unicode_name != long_name


def test_deconstruct_keeps_trigger_name() -> None:
    field = NamedTriggerRow._meta.get_field("version")
    assert field.deconstruct()[1:] == (
        "concurrency.fields.TriggerVersionField",
        [],
        {"default": 0, "help_text": "record revision number", "trigger_name": "named_row_version"},
    )


def test_unsupported_vendor_is_refused_with_a_message() -> None:
    from django.db.backends.dummy.base import DatabaseWrapper

    with pytest.raises(NotSupportedError, match="does not support 'unknown'"):
        triggers.factory(DatabaseWrapper({}, alias="nosql"))


# --- On the real database ----------------------------------------------------


class TriggerSaveTests(TestCase):
    def test_test_database_has_the_triggers(self) -> None:
        assert {ROW_TRIGGER, NAMED_TRIGGER} <= set(triggers.factory(connection).names())

    def test_create_starts_at_one(self) -> None:
        row = TriggerRow.objects.create(name="a")
        assert row.version == 1 == _db_version(row.pk)

    def test_save_knows_the_stored_version_in_one_plain_update(self) -> None:
        row = TriggerRow.objects.create(name="a")
        row.name = "b"
        with CaptureQueriesContext(connection) as ctx:
            row.save()
        assert row.version == 2 == _db_version(row.pk)
        writes = _writes(ctx)
        # The library's trigger keeps version + 1 over a row matched at 1:
        # nothing to read back (no RETURNING, no LAST_INSERT_ID()).
        assert len(writes) == 1 and writes[0].startswith("UPDATE")
        assert "RETURNING" not in writes[0] and "LAST_INSERT_ID" not in writes[0]
        row.name = "c"
        row.save()
        assert row.version == 3 == _db_version(row.pk)

    def test_raw_sql_update_bumps_and_stale_save_fails(self) -> None:
        row = TriggerRow.objects.create(name="a")
        _raw_update("UPDATE {table} SET name = %s WHERE id = %s", "outside", row.pk)
        assert _db_version(row.pk) == 2
        row.name = "mine"
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            row.save()
        assert (info.value.version, info.value.db_version) == (1, 2)
        assert TriggerRow.objects.get(pk=row.pk).name == "outside"

    def test_queryset_update_bumps_and_stale_save_fails(self) -> None:
        row = TriggerRow.objects.create(name="a")
        TriggerRow.objects.filter(pk=row.pk).update(count=5)
        assert _db_version(row.pk) == 2
        row.name = "mine"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            row.save()
        fresh = TriggerRow.objects.get(pk=row.pk)
        assert (fresh.name, fresh.count) == ("a", 5)
        fresh.name = "fresh"
        fresh.save()
        assert fresh.version == 3 == _db_version(row.pk)

    def test_version_never_goes_back_and_higher_writes_are_kept(self) -> None:
        row = TriggerRow.objects.create(name="a")
        _raw_update("UPDATE {table} SET version = %s WHERE id = %s", 10, row.pk)
        assert _db_version(row.pk) == 10
        _raw_update("UPDATE {table} SET version = %s WHERE id = %s", 3, row.pk)
        assert _db_version(row.pk) == 11

    def test_disable_increment_does_not_stop_the_database(self) -> None:
        row = TriggerRow.objects.create(name="a")
        with concurrency_disable_increment(TriggerRow):
            row.name = "b"
            row.save()
        assert row.version == 2 == _db_version(row.pk)

    def test_disable_concurrency_skips_the_check_and_reads_back(self) -> None:
        row = TriggerRow.objects.create(name="a")
        TriggerRow.objects.filter(pk=row.pk).update(count=1)
        with disable_concurrency(row):
            row.name = "b"
            row.save()
        assert row.version == 3 == _db_version(row.pk)

    def test_stale_delete_is_refused(self) -> None:
        row = TriggerRow.objects.create(name="a")
        TriggerRow.objects.filter(pk=row.pk).update(count=1)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            row.delete()
        assert TriggerRow.objects.filter(pk=row.pk).exists()

    def test_expression_values_are_saved_and_version_read_back(self) -> None:
        row = TriggerRow.objects.create(name="a", count=1)
        row.count = F("count") + 1
        row.save()
        assert row.version == 2 == _db_version(row.pk)
        row.refresh_from_db()
        assert row.count == 2

    def test_update_fields_reads_back(self) -> None:
        row = TriggerRow.objects.create(name="a")
        row.count = 4
        row.save(update_fields=["count"])
        assert row.version == 2 == _db_version(row.pk)


@pytest.mark.race
class TriggerRaceTests(TransactionTestCase):
    def test_outside_writer_and_two_savers_on_their_own_connections(self) -> None:
        row = TriggerRow.objects.create(name="a")
        barrier = threading.Barrier(3)
        outcomes: list[str] = []

        def save(name: str) -> None:
            try:
                mine = TriggerRow.objects.get(pk=row.pk)
                barrier.wait()
                mine.name = name
                with transaction.atomic():
                    mine.save()
                outcomes.append("saved")
            except RecordModifiedError:
                outcomes.append("refused")

        def outside() -> None:
            barrier.wait()
            TriggerRow.objects.filter(pk=row.pk).update(count=F("count") + 1)

        run_together(lambda: save("x"), lambda: save("y"), outside)
        # Three writes raced for version 1; the outside one always lands and
        # at most one save can have seen version 1 still in the row.
        fresh = TriggerRow.objects.get(pk=row.pk)
        assert fresh.count == 1
        assert outcomes.count("saved") <= 1 and len(outcomes) == 2
        assert fresh.version == 2 + outcomes.count("saved")


@pytest.mark.django_db(databases=["default", "other"])
def test_save_on_other_database_uses_its_trigger() -> None:
    row = TriggerRow.objects.using("other").create(name="a")
    TriggerRow.objects.using("other").filter(pk=row.pk).update(count=1)
    with pytest.raises(RecordModifiedError), transaction.atomic(using="other"):
        row.save()
    assert TriggerRow.objects.using("other").get(pk=row.pk).version == 2


# --- Creating and dropping: command, operations, post_migrate, checks --------


class TriggerManagementTests(TransactionTestCase):
    databases = {"default", "other"}

    def tearDown(self) -> None:
        triggers.create_triggers(["default", "other"])

    def _call(self, *args: str) -> str:
        out = io.StringIO()
        call_command("triggers", *args, stdout=out, no_color=True)
        return out.getvalue()

    def _names(self, alias: str = "default") -> list[str]:
        return triggers.factory(connections[alias]).names()

    def test_list_shows_only_ours(self) -> None:
        maker = triggers.factory(connection)
        other = connection.ops.quote_name("someone_else")
        foreign = {**maker.params(FIELD), "name": other, "function": other}
        maker._run([sql.format(**foreign) for sql in maker.sql_create])
        try:
            out = self._call("list", "--database", "default")
            assert out.splitlines() == [
                "Database: default",
                f"    {ROW_TRIGGER}  demo.TriggerRow.version",
                f"    {NAMED_TRIGGER}  demo.NamedTriggerRow.version",
            ]
        finally:
            maker._run([sql.format(**foreign) for sql in maker.sql_drop])

    def test_drop_then_create_in_one_process_and_idempotent(self) -> None:
        out = self._call("drop", "--database", "default")
        assert f"{ROW_TRIGGER}  demo.TriggerRow.version  dropped" in out
        assert self._names() == []
        assert NAMED_TRIGGER in self._names("other")
        assert f"{ROW_TRIGGER}  demo.TriggerRow.version  absent" in self._call("drop", "-d", "default")
        out = self._call("create", "-d", "default")
        assert f"{ROW_TRIGGER}  demo.TriggerRow.version  created" in out
        assert self._names() == [ROW_TRIGGER, NAMED_TRIGGER]
        out = self._call("create")
        assert f"{ROW_TRIGGER}  demo.TriggerRow.version  exists" in out
        assert "Database: other" in out
        assert self._names() == [ROW_TRIGGER, NAMED_TRIGGER]
        row = TriggerRow.objects.create(name="a")
        TriggerRow.objects.filter(pk=row.pk).update(count=1)
        assert _db_version(row.pk) == 2

    def test_without_trigger_outside_writes_do_not_bump(self) -> None:
        self._call("drop", "-d", "default")
        row = TriggerRow.objects.create(name="a")
        TriggerRow.objects.filter(pk=row.pk).update(count=1)
        assert _db_version(row.pk) == 1

    @pytest.mark.postgresql
    def test_drop_removes_the_postgresql_function(self) -> None:
        def functions() -> list[str]:
            with connection.cursor() as cursor:
                cursor.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'concurrency%%'")
                return sorted(row[0] for row in cursor.fetchall())

        assert functions() == [ROW_TRIGGER, NAMED_TRIGGER]
        self._call("drop", "-d", "default")
        assert functions() == []

    def test_unknown_database_is_a_command_error(self) -> None:
        from django.core.management import CommandError

        with pytest.raises(CommandError, match="Unknown database 'nope'"):
            self._call("list", "--database", "nope")

    def test_migration_operations_are_reversible(self) -> None:
        state = ProjectState.from_apps(apps)
        drop = DropTrigger("TriggerRow", "version")
        create = CreateTrigger("TriggerRow", "version")
        with connection.schema_editor() as editor:
            drop.database_forwards("demo", editor, state, state)
        assert ROW_TRIGGER not in self._names()
        with connection.schema_editor() as editor:
            drop.database_backwards("demo", editor, state, state)
        assert ROW_TRIGGER in self._names()
        with connection.schema_editor() as editor:
            create.database_backwards("demo", editor, state, state)
        assert ROW_TRIGGER not in self._names()
        with connection.schema_editor() as editor:
            create.database_forwards("demo", editor, state, state)
            create.database_forwards("demo", editor, state, state)  # replaces, never fails
        assert ROW_TRIGGER in self._names()
        assert create.deconstruct() == (
            "CreateTrigger",
            [],
            {"model_name": "TriggerRow", "field_name": "version"},
        )
        assert create.describe() == "Create the version trigger of TriggerRow.version"

    def test_sqlmigrate_shows_the_trigger_sql(self) -> None:
        out = io.StringIO()
        call_command("sqlmigrate", "demo", "0003_triggers", stdout=out)
        assert f"CREATE TRIGGER {connection.ops.quote_name(ROW_TRIGGER)}" in out.getvalue()

    def test_post_migrate_creates_only_on_the_database_migrated(self) -> None:
        triggers.drop_triggers(["default", "other"])
        config = apps.get_app_config("demo")
        state_apps = ProjectState.from_apps(apps).apps
        triggers.create_after_migrate(app_config=config, using="other", apps=state_apps, verbosity=0)
        assert self._names("other") == [ROW_TRIGGER, NAMED_TRIGGER]
        assert self._names("default") == []
        with override_settings(CONCURRENCY_AUTO_CREATE_TRIGGERS=False):
            triggers.create_after_migrate(app_config=config, using="default", apps=state_apps)
        assert self._names("default") == []
        call_command("migrate", "demo", database="default", verbosity=0)
        assert self._names("default") == [ROW_TRIGGER, NAMED_TRIGGER]

    def test_missing_trigger_is_warning_w001_only_with_a_database(self) -> None:
        assert check_triggers_exist(databases=["default"]) == []
        triggers.drop_triggers(["default"])
        field = NamedTriggerRow._meta.get_field("version")
        warnings = check_triggers_exist(databases=["default"])
        assert [w.id for w in warnings] == ["concurrency.W001", "concurrency.W001"]
        named = next(w for w in warnings if w.obj is field)
        assert named == checks.Warning(
            f"The trigger {NAMED_TRIGGER} of demo.NamedTriggerRow.version is missing from database "
            "'default': writes made outside Django do not bump the version.",
            hint="Run 'manage.py migrate' or 'manage.py triggers create'.",
            obj=field,
            id="concurrency.W001",
        )
        assert check_triggers_exist(databases=None) == []
        out, err = io.StringIO(), io.StringIO()
        call_command("check", stdout=out, stderr=err)
        assert "concurrency.W001" not in out.getvalue() + err.getvalue()
        call_command("check", "--database", "default", stdout=out, stderr=err)
        assert "concurrency.W001" in out.getvalue() + err.getvalue()
        assert checks.Tags.database in check_triggers_exist.tags  # type: ignore[attr-defined]


# --- A project's own trigger: whatever it stores is what the instance holds -----

_JUMP_POSTGRESQL = (
    "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $jump$ "
    "BEGIN NEW.{column} := OLD.{column} + 10; RETURN NEW; END; $jump$",
    "CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()",
)


class JumpPostgreSQLFactory(PostgreSQLFactory):
    sql_create = _JUMP_POSTGRESQL


class JumpMySQLFactory(MySQLFactory):
    sql_create = (
        "CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW SET NEW.{column} = OLD.{column} + 10",
    )


class JumpSQLiteFactory(SQLiteFactory):
    sql_create = (
        "CREATE TRIGGER {name} AFTER UPDATE ON {table} FOR EACH ROW "
        "WHEN NEW.{column} IS NOT OLD.{column} + 10 "
        "BEGIN UPDATE {table} SET {column} = OLD.{column} + 10 WHERE {pk} = NEW.{pk}; END",
    )


JUMP = {
    "postgresql": "tests.fields.test_triggers.JumpPostgreSQLFactory",
    "mysql": "tests.fields.test_triggers.JumpMySQLFactory",
    "sqlite": "tests.fields.test_triggers.JumpSQLiteFactory",
}


class ProjectTriggerTests(TransactionTestCase):
    """A factory from CONCURRENCY_TRIGGERS_FACTORY whose trigger stores old + 10, not old + 1."""

    def setUp(self) -> None:
        self.settings = override_settings(
            CONCURRENCY_TRIGGERS_FACTORY={connection.vendor: JUMP[connection.vendor]}
        )
        self.settings.enable()
        triggers.factory(connection).create(FIELD, replace=True)

    def tearDown(self) -> None:
        self.settings.disable()
        triggers.factory(connection).create(FIELD, replace=True)

    def test_the_version_its_trigger_stored_is_read_back(self) -> None:
        row = TriggerRow.objects.create(name="a")
        row.name = "b"
        row.save()
        assert row.version == 11 == _db_version(row.pk)
        row.count = F("count") + 1
        row.save(update_fields=["count"])
        assert row.version == 21 == _db_version(row.pk)
        with disable_concurrency(row):
            row.name = "c"
            row.save()
        assert row.version == 31 == _db_version(row.pk)

    def test_a_stale_copy_is_still_refused(self) -> None:
        row = TriggerRow.objects.create(name="a")
        stale = TriggerRow.objects.get(pk=row.pk)
        row.name = "b"
        row.save()
        stale.name = "stale"
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            stale.save()
        assert (info.value.version, info.value.db_version) == (1, 11)
        assert TriggerRow.objects.get(pk=row.pk).name == "b"


def test_only_the_library_factories_count_as_its_own() -> None:
    vendor = connection.vendor
    assert triggers.is_default_factory(connection)
    own = triggers.DEFAULT_FACTORIES[vendor]
    with override_settings(CONCURRENCY_TRIGGERS_FACTORY={vendor: own}):
        assert triggers.is_default_factory(connection)
    cls = type(triggers.factory(connection))
    with override_settings(CONCURRENCY_TRIGGERS_FACTORY={vendor: cls}):
        assert triggers.is_default_factory(connection)
    with override_settings(CONCURRENCY_TRIGGERS_FACTORY={vendor: JUMP[vendor]}):
        assert not triggers.is_default_factory(connection)
    with override_settings(CONCURRENCY_TRIGGERS_FACTORY={vendor: MyFactory}):
        assert not triggers.is_default_factory(connection)
    other = "postgresql" if vendor != "postgresql" else "mysql"
    with override_settings(CONCURRENCY_TRIGGERS_FACTORY={other: JUMP[other]}):
        assert triggers.is_default_factory(connection)


# --- Configuration checks ------------------------------------------------------


class MyFactory(SQLiteFactory):
    pass


def test_factory_setting_is_merged_with_the_defaults() -> None:
    with override_settings(
        CONCURRENCY_TRIGGERS_FACTORY={connection.vendor: "tests.fields.test_triggers.MyFactory"}
    ):
        assert type(triggers.factory(connection)) is MyFactory
        assert triggers.factories()["postgresql" if connection.vendor != "postgresql" else "mysql"]
        assert check_triggers() == []


def test_bad_factory_path_is_error_e102() -> None:
    with override_settings(CONCURRENCY_TRIGGERS_FACTORY={"sqlite": "no.such.Factory"}):
        errors = check_triggers()
    assert [e.id for e in errors] == ["concurrency.E102"]
    assert errors[0].msg.startswith(
        "CONCURRENCY_TRIGGERS_FACTORY['sqlite'] = 'no.such.Factory' cannot be imported"
    )
    with override_settings(CONCURRENCY_TRIGGERS_FACTORY={"sqlite": "tests.demo.models.Tag"}):
        assert [e.id for e in check_triggers()] == ["concurrency.E102"]


def test_unsupported_vendor_is_error_e101() -> None:
    connections.settings["nosql"] = {**connections.settings["default"], "ENGINE": "django.db.backends.dummy"}
    try:
        errors = check_triggers()
    finally:
        del connections.settings["nosql"]
        del connections["nosql"]
    assert {e.id for e in errors} == {"concurrency.E101"}
    assert {e.obj for e in errors} == {FIELD, NamedTriggerRow._meta.get_field("version")}
    assert "'unknown' databases (database 'nosql') do not support" in errors[0].msg


@isolate_apps("tests.demo")
def test_composite_primary_key_is_a_check_error_not_a_crash() -> None:
    class Composite(models.Model):
        pk = models.CompositePrimaryKey("a", "b")
        a = models.IntegerField()
        b = models.IntegerField()
        version = TriggerVersionField()

        class Meta:
            app_label = "demo"

    assert triggers.trigger_fields(models=[Composite]) == []
    assert [e.id for e in Composite.check() if e.id.startswith("concurrency")] == ["concurrency.E002"]
