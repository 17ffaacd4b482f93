"""Version fields: options, migrations, fixtures."""

from __future__ import annotations

import io
import json

import pytest
from django.core import checks, serializers
from django.core.management import call_command
from django.db import connection, models
from django.test import TestCase, override_settings
from django.test.utils import isolate_apps

from concurrency import checks as concurrency_checks
from concurrency.fields import AutoIncVersionField, IntegerVersionField, VersionField
from tests.demo.models import Article, CustomVersionField


def test_version_field_is_a_big_integer_field() -> None:
    field = Article._meta.get_field("version")
    assert isinstance(field, models.BigIntegerField)
    assert field.get_internal_type() == "BigIntegerField"


def test_deconstruct_gives_public_path_and_the_kwargs_django_concurrency_wrote() -> None:
    assert AutoIncVersionField().deconstruct()[1:] == (
        "concurrency.fields.AutoIncVersionField",
        [],
        {"default": 0, "help_text": "record revision number"},
    )
    _name, path, _args, kwargs = IntegerVersionField(
        db_column="rev", verbose_name="revision", help_text="h", default=5, db_comment="c"
    ).deconstruct()
    assert path == "concurrency.fields.IntegerVersionField"
    assert kwargs == {
        "db_column": "rev",
        "verbose_name": "revision",
        "help_text": "h",
        "default": 5,
        "db_comment": "c",
    }


def test_standard_options_are_honoured() -> None:
    field = CustomVersionField._meta.get_field("revision")
    assert (field.column, field.verbose_name, field.help_text, field.default) == (
        "rev",
        "revision",
        "bumped on every save",
        5,
    )


def test_full_clean_reports_a_bad_version_as_a_validation_error() -> None:
    from django.core.exceptions import ValidationError

    article = Article(title="t", version="abc")
    with pytest.raises(ValidationError) as info:
        article.full_clean()
    assert "version" in info.value.message_dict


# With database routers (the cluster settings) makemigrations checks every database.
@pytest.mark.django_db(databases="__all__")
def test_makemigrations_check_is_clean() -> None:
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


class ExistingRowsTests(TestCase):
    def test_row_added_before_the_version_column_has_zero_and_saves(self) -> None:
        Article.objects.create(title="a")
        Article.objects.update(version=0)
        obj = Article.objects.get()
        obj.title = "b"
        obj.save()
        assert Article.objects.get().version == 1


class FixtureTests(TestCase):
    def _fixture(self, tmp_path_name: str, rows: list[dict]) -> str:
        import tempfile

        path = f"{tempfile.mkdtemp()}/{tmp_path_name}.json"
        with open(path, "w") as fh:
            json.dump(rows, fh)
        return path

    def test_loaddata_inserts_and_overwrites_keeping_fixture_versions(self) -> None:
        existing = Article.objects.create(title="old")
        existing.save()
        existing.save()  # version 3 in the database
        path = self._fixture(
            "articles",
            [
                {
                    "model": "demo.article",
                    "pk": existing.pk,
                    "fields": {"title": "from fixture", "version": 42},
                },
                {"model": "demo.article", "pk": 9001, "fields": {"title": "new", "version": 7}},
            ],
        )
        call_command("loaddata", path, verbosity=0)
        assert list(Article.objects.order_by("pk").values_list("title", "version")) == [
            ("from fixture", 42),
            ("new", 7),
        ]

    def test_dumpdata_round_trip(self) -> None:
        Article.objects.create(title="x")
        data = serializers.serialize("json", Article.objects.all())
        assert json.loads(data)[0]["fields"]["version"] == 1


@isolate_apps("tests.demo")
def test_two_version_fields_is_a_check_error() -> None:
    class Twice(models.Model):
        a = AutoIncVersionField()
        b = AutoIncVersionField()

        class Meta:
            app_label = "demo"

    errors = [e for e in Twice.check() if e.id.startswith("concurrency.")]
    assert errors == [
        checks.Error(
            "demo.Twice has more than one version field: a, b.",
            hint="Keep one version field per model (and per inheritance chain).",
            obj=Twice,
            id="concurrency.E001",
        )
    ]


@isolate_apps("tests.demo")
def test_composite_primary_key_is_a_check_error() -> None:
    class Composite(models.Model):
        pk = models.CompositePrimaryKey("a", "b")
        a = models.IntegerField()
        b = models.IntegerField()
        version = AutoIncVersionField()

        class Meta:
            app_label = "demo"

    errors = [e.id for e in Composite.check() if e.id.startswith("concurrency.")]
    assert errors == ["concurrency.E002"]


@override_settings(CONCURRENCY_IGNORE_DEFAULT=False, CONCURRENCY_MANUAL_TRIGGERS=True)
def test_removed_settings_are_check_errors() -> None:
    errors = concurrency_checks.check_settings()
    assert [(e.id, e.msg) for e in errors] == [
        ("concurrency.E003", "The setting CONCURRENCY_IGNORE_DEFAULT has been removed."),
        ("concurrency.E003", "The setting CONCURRENCY_MANUAL_TRIGGERS has been removed."),
    ]
    assert errors[0].hint == "Use CONCURRENCY_VERSION_FIELD_REQUIRED instead."


@override_settings(CONCURRENCY_CALLBACK="no.such.module.callback")
def test_bad_callback_path_is_a_check_error() -> None:
    errors = concurrency_checks.check_settings()
    assert [e.id for e in errors] == ["concurrency.E004"]
    assert "CONCURRENCY_CALLBACK" in errors[0].msg


# JSONField's check asks SQLite's features, which query the database once.
@pytest.mark.django_db(databases="__all__")
def test_demo_project_passes_checks() -> None:
    found = [e for e in checks.run_checks() if e.id and e.id.startswith("concurrency.")]
    assert [e for e in found if not e.is_silenced()] == []


def test_settings_are_read_lazily() -> None:
    from concurrency.conf import conf

    assert conf.POLICY == 1
    with override_settings(CONCURRENCY_POLICY=2):
        assert conf.POLICY == 2
    assert conf.POLICY == 1


def test_base_field_is_usable() -> None:
    assert VersionField().next_version(None, 3) == 4  # type: ignore[arg-type]


@pytest.mark.postgresql
@pytest.mark.django_db
def test_db_comment_reaches_postgresql() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "select col_description('demo_simpleconcurrentmodel'::regclass, attnum) from pg_attribute "
            "where attrelid = 'demo_simpleconcurrentmodel'::regclass and attname = 'version'"
        )
        assert cursor.fetchone()[0] == "row version"


def test_plain_model_admin_keeps_the_version_hidden() -> None:
    """The admin's number widget for big integers would blank a signed version in a browser."""
    from django.contrib import admin
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = type("U", (), {"is_superuser": True, "has_perm": lambda *a: True})()
    form_class = admin.ModelAdmin(Article, admin.site).get_form(request)
    widget = form_class.base_fields["version"].widget
    assert widget.input_type == "hidden"
