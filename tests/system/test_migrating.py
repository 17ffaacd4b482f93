"""Code written for django-concurrency runs unchanged (docs/guide/migrating.rst).

The first part is a small project written the django-concurrency way: its
imports, its settings, a ConcurrentModelAdmin, a form with a custom signer,
the middleware and the triggers command called from Python. The tests after
it check each piece of that import surface and the two bugs the switch found.
The last part switches tests/switching, a project with the migration
django-concurrency 2.8.1 wrote for it, and checks what the guide promises.
"""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.management import CommandError, call_command
from django.db import connection, connections, models, transaction
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.graph import MigrationGraph
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ModelState, ProjectState
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.test import RequestFactory, TestCase, TransactionTestCase, override_settings
from django.test.utils import isolate_apps
from django.urls import path, reverse
from django.utils.encoding import smart_str
from django.utils.functional import SimpleLazyObject

import concurrency.conf
from concurrency.admin import ConcurrencyActionMixin, ConcurrencyListEditableMixin, ConcurrentModelAdmin
from concurrency.api import (
    apply_concurrency_check,
    concurrency_disable_increment,
    disable_concurrency,
    get_revision_of_object,
    get_version,
    get_version_fieldname,
    is_changed,
)
from concurrency.config import (
    CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL,
    CONCURRENCY_LIST_EDITABLE_POLICY_SILENT,
    conf,
)
from concurrency.exceptions import InconsistencyError, RecordModifiedError, VersionChangedError, VersionError
from concurrency.fields import (
    AutoIncVersionField,
    ConditionalVersionField,
    IntegerVersionField,
    TriggerVersionField,
    VersionField,
)
from concurrency.forms import ConcurrentForm, SignedValue, VersionFieldSigner, VersionWidget, get_signer
from concurrency.forms import VersionField as VersionFormField
from concurrency.middleware import ConcurrencyMiddleware
from concurrency.templatetags.concurrency import identity, is_version, version
from concurrency.test_utils import ConcurrencyTestMixin
from concurrency.triggers import create_triggers, drop_triggers, get_trigger_name, get_triggers
from concurrency.utils import ConcurrencyTestMixin as ConcurrencyTestMixin26
from concurrency.utils import flatten, fqn, get_classname, refetch
from concurrency.views import ConflictResponse, callback, conflict
from tests.demo.models import Article, TriggerRow
from tests.support.form_reader import form_data
from tests.switching.forms import JobForm
from tests.switching.models import Job, Label, Report
from tests.switching.tasks import run_job

ROW_TRIGGER = "concurrency_demo_triggerrow_version"
CHANGED = "Someone else changed this record after you opened it"
INVALID = "The version of this record in the form is not valid"


# --- A project written for django-concurrency --------------------------------


class DummySigner:
    """Dummy signer that simply returns the raw version value (django-concurrency's docs)."""

    def sign(self, value: Any) -> str:
        return smart_str(value)

    def unsign(self, signed_value: Any) -> str:
        return smart_str(signed_value)


LEGACY_SETTINGS = {
    "CONCURRENCY_ENABLED": True,
    "CONCURRENCY_VERSION_FIELD_REQUIRED": True,
    "CONCURRENCY_POLICY": CONCURRENCY_LIST_EDITABLE_POLICY_SILENT,
    "CONCURRENCY_FIELD_SIGNER": "tests.system.test_migrating.DummySigner",
    "CONCURRENCY_CALLBACK": "concurrency.views.callback",
    "CONCURRENCY_HANDLER409": "concurrency.views.conflict",
    "CONCURRENCY_AUTO_CREATE_TRIGGERS": True,
}


class ArticleForm(ConcurrentForm):
    version = VersionFormField(signer=DummySigner())

    class Meta:
        model = Article
        fields = ["title", "body", "version"]


site = admin.AdminSite(name="legacy")


@admin.register(Article, site=site)
class LegacyArticleAdmin(ConcurrentModelAdmin):
    list_display = ["title", "status", "version"]
    list_display_links = ["version"]
    list_editable = ["title", "status"]
    fields = ["title", "status", "body", "version"]
    list_editable_policy = CONCURRENCY_LIST_EDITABLE_POLICY_SILENT


def edit_article(request: HttpRequest, pk: int) -> HttpResponse:
    """A view that saves without catching RecordModifiedError: the middleware answers 409."""
    article = get_object_or_404(Article, pk=pk)
    form = ArticleForm(request.POST or None, instance=article)
    if request.method == "POST" and form.is_valid():
        Article.objects.filter(pk=pk).update(version=F("version") + 1)  # someone else, meanwhile
        form.save()
        return HttpResponse("saved")
    return HttpResponse(form.as_p())


urlpatterns = [
    path("legacy-admin/", site.urls),
    path("articles/<int:pk>/", edit_article),
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "concurrency.middleware.ConcurrencyMiddleware",
]


class ArticleConcurrencyTest(ConcurrencyTestMixin, TestCase):
    """The django-concurrency 2.8 test mixin, imported from concurrency.test_utils."""

    concurrency_model = Article
    concurrency_kwargs = {"title": "mixin"}


class ArticleConcurrencyTest26(ConcurrencyTestMixin26, TestCase):
    """The same mixin from its 2.6 home, concurrency.utils."""

    concurrency_model = Article
    concurrency_kwargs = {"title": "mixin"}


@override_settings(ROOT_URLCONF="tests.system.test_migrating", MIDDLEWARE=MIDDLEWARE, **LEGACY_SETTINGS)
class LegacyProjectTests(TransactionTestCase):
    """Outside a test transaction, as in production: a refused save inside a view is a 409."""

    def setUp(self) -> None:
        self.article = Article.objects.create(title="Original", body="text")
        admin_user = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(admin_user)

    def change_url(self) -> str:
        return reverse("legacy:demo_article_change", args=[self.article.pk])

    def test_admin_change_form_saves_with_the_raw_signed_version(self) -> None:
        page = self.client.get(self.change_url())
        assert page.status_code == 200
        data = form_data(page.content, "article_form", title="Edited")
        assert data["version"] == "1"  # DummySigner: the raw version travels
        response = self.client.post(self.change_url(), data)
        assert response.status_code == 302
        self.article.refresh_from_db()
        assert (self.article.title, self.article.version) == ("Edited", 2)

    def test_admin_change_form_refuses_a_stale_save(self) -> None:
        data = form_data(self.client.get(self.change_url()).content, "article_form", title="Mine")
        Article.objects.filter(pk=self.article.pk).update(title="Theirs", version=F("version") + 1)
        response = self.client.post(self.change_url(), data)
        assert response.status_code == 200
        assert CHANGED in response.content.decode()
        self.article.refresh_from_db()
        assert (self.article.title, self.article.version) == ("Theirs", 2)

    def test_admin_list_editable_saves_current_rows_and_names_stale_ones(self) -> None:
        other = Article.objects.create(title="Other")
        url = reverse("legacy:demo_article_changelist")
        data = form_data(self.client.get(url).content, "changelist-form")
        rows = {data[f"form-{i}-id"]: i for i in range(int(data["form-TOTAL_FORMS"]))}
        data[f"form-{rows[str(self.article.pk)]}-title"] = "Mine"
        data[f"form-{rows[str(other.pk)]}-title"] = "Other edited"
        Article.objects.filter(pk=self.article.pk).update(title="Theirs", version=F("version") + 1)
        response = self.client.post(url, {**data, "_save": "Save"}, follow=True)
        assert response.status_code == 200
        messages = " ".join(str(m) for m in response.context["messages"])
        assert "Mine" in messages, messages
        self.article.refresh_from_db()
        other.refresh_from_db()
        assert (self.article.title, other.title) == ("Theirs", "Other edited")

    def test_form_with_custom_signer_and_middleware_answer_409(self) -> None:
        url = f"/articles/{self.article.pk}/"
        assert 'name="version" value="1"' in self.client.get(url).content.decode()
        response = self.client.post(url, {"title": "Mine", "body": "", "version": "1"})
        assert response.status_code == 409
        assert isinstance(response, ConflictResponse)
        self.article.refresh_from_db()
        assert (self.article.title, self.article.version) == ("Original", 2)

    def test_api_calls_of_a_legacy_project(self) -> None:
        copy = Article.objects.get(pk=self.article.pk)
        assert get_version_fieldname(self.article) == "version"
        assert get_revision_of_object(self.article) == 1
        assert not is_changed(self.article)
        assert get_version(self.article, 1).pk == self.article.pk
        with disable_concurrency(Article):
            copy.save()
        assert is_changed(self.article)
        with concurrency_disable_increment(copy):
            copy.save()
        assert refetch(copy).version == 2
        with pytest.raises(RecordModifiedError), transaction.atomic():
            self.article.save()
        assert (identity(copy), version(copy)) == (f"{copy.pk},2", 2)
        assert is_version(Article._meta.get_field("version"))


# --- concurrency.config ---------------------------------------------------------


def test_config_reexports_the_one_settings_object() -> None:
    assert conf is concurrency.conf.conf
    assert (CONCURRENCY_LIST_EDITABLE_POLICY_SILENT, CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL) == (1, 2)
    assert CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL == concurrency.conf.LIST_EDITABLE_POLICY_ABORT_ALL
    assert conf.POLICY == CONCURRENCY_LIST_EDITABLE_POLICY_SILENT
    with override_settings(CONCURRENCY_POLICY=CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL):
        assert conf.POLICY == CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL
    assert conf.POLICY == CONCURRENCY_LIST_EDITABLE_POLICY_SILENT


def test_the_other_public_names_resolve() -> None:
    # Imported at the top the way django-concurrency's users import them.
    assert issubclass(IntegerVersionField, VersionField)
    assert issubclass(AutoIncVersionField, VersionField)
    assert issubclass(TriggerVersionField, VersionField)
    assert issubclass(ConditionalVersionField, AutoIncVersionField)
    assert issubclass(ConcurrentModelAdmin, ConcurrencyActionMixin)
    assert issubclass(ConcurrentModelAdmin, ConcurrencyListEditableMixin)
    assert issubclass(VersionChangedError, Exception) and issubclass(VersionError, Exception)
    assert issubclass(InconsistencyError, Exception)
    assert callable(apply_concurrency_check) and callable(get_signer) and callable(conflict)
    assert VersionFieldSigner().sign(3).startswith("3:")
    assert str(SignedValue("1:abc")) == "1:abc"
    assert 'type="hidden"' in VersionWidget().render("version", SignedValue("1:abc", version=1))
    with pytest.raises(RecordModifiedError):
        callback(Article(pk=1))


# --- concurrency.utils.refetch ---------------------------------------------------


@pytest.mark.django_db(databases=["default", "other"])
def test_refetch_returns_a_fresh_copy_from_the_instances_database() -> None:
    article = Article.objects.using("other").create(title="There")
    Article.objects.using("other").filter(pk=article.pk).update(title="Changed", version=F("version") + 1)
    fresh = refetch(article)
    assert fresh is not article
    assert (fresh.title, fresh.version, fresh._state.db) == ("Changed", 2, "other")
    assert (article.title, article.version) == ("There", 1)


@pytest.mark.django_db
def test_refetch_of_a_deleted_row_raises_does_not_exist() -> None:
    article = Article.objects.create(title="Gone")
    Article.objects.filter(pk=article.pk).delete()
    with pytest.raises(Article.DoesNotExist):
        refetch(article)


# --- ConcurrencyMiddleware() without get_response --------------------------------


@pytest.mark.django_db
def test_middleware_without_get_response_answers_409() -> None:
    article = Article.objects.create(title="Mine")
    request = RequestFactory().get("/")
    response = ConcurrencyMiddleware().process_exception(request, RecordModifiedError(target=article))
    assert response is not None
    assert response.status_code == 409
    assert "Conflict" in response.content.decode()
    assert ConcurrencyMiddleware().process_exception(request, ValueError("x")) is None


def handler409(request: HttpRequest, target: Any = None) -> HttpResponse:
    return HttpResponse(f"custom {target.pk}", status=409)


@pytest.mark.django_db
@override_settings(CONCURRENCY_HANDLER409="tests.system.test_migrating.handler409")
def test_middleware_without_get_response_uses_handler409() -> None:
    article = Article.objects.create(title="Mine")
    response = ConcurrencyMiddleware().process_exception(
        RequestFactory().post("/"), RecordModifiedError(target=article)
    )
    assert response is not None
    assert (response.status_code, response.content.decode()) == (409, f"custom {article.pk}")


def test_middleware_without_get_response_cannot_be_called() -> None:
    with pytest.raises(TypeError, match="created without get_response"):
        ConcurrencyMiddleware()(RequestFactory().get("/"))


# --- forms.VersionField(signer=...) ---------------------------------------------


class ReversingSigner:
    """Signs by reversing the digits: shows the field uses exactly this object."""

    def sign(self, value: Any) -> str:
        return f"r{str(value)[::-1]}"

    def unsign(self, signed: str) -> str:
        if not signed.startswith("r"):
            raise ValueError("not signed by me")
        return signed[1:][::-1]


class ReversingForm(ConcurrentForm):
    version = VersionFormField(signer=ReversingSigner())

    class Meta:
        model = Article
        fields = ["title", "version"]


@pytest.mark.django_db
def test_version_field_signs_with_the_given_signer() -> None:
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).update(version=12)
    article.refresh_from_db()
    html = ReversingForm(instance=article).as_p()
    assert 'name="version" value="r21"' in html
    form = ReversingForm({"title": "b", "version": "r21"}, instance=article)
    assert form.is_valid(), form.errors
    form.save()
    article.refresh_from_db()
    assert (article.title, article.version) == ("b", 13)


@pytest.mark.django_db
def test_version_field_with_a_signer_refuses_what_it_cannot_unsign_and_stale_versions() -> None:
    article = Article.objects.create(title="a")
    for bad in ("1", "rx", ""):
        form = ReversingForm({"title": "b", "version": bad}, instance=article)
        assert not form.is_valid()
    stale = ReversingForm({"title": "b", "version": "r1"}, instance=article)
    Article.objects.filter(pk=article.pk).update(version=F("version") + 1)
    assert not stale.is_valid()
    assert CHANGED in str(stale.non_field_errors())
    article.refresh_from_db()
    assert (article.title, article.version) == ("a", 2)


@pytest.mark.django_db
def test_default_version_field_is_still_bound_to_the_row() -> None:
    first, second = Article.objects.create(title="a"), Article.objects.create(title="b")

    class Plain(ConcurrentForm):
        class Meta:
            model = Article
            fields = ["title", "version"]

    signed_for_first = Plain(instance=first)["version"].value()
    assert signed_for_first != "1"
    form = Plain({"title": "x", "version": signed_for_first}, instance=second)
    assert not form.is_valid()
    assert INVALID in str(form.non_field_errors())


@pytest.mark.parametrize("signer", [DummySigner, object(), "tests.system.test_migrating.DummySigner"])
def test_version_field_refuses_a_signer_without_sign_and_unsign(signer: Any) -> None:
    with pytest.raises(TypeError, match="sign\\(\\) and unsign\\(\\)"):
        VersionFormField(signer=signer)


# --- save(refetch=True) on TriggerVersionField models --------------------------


@pytest.mark.django_db
def test_trigger_model_save_accepts_refetch_and_holds_the_stored_version() -> None:
    row = TriggerRow.objects.create(name="a")
    row.name = "b"
    assert row.save(refetch=True) is row
    assert row.version == TriggerRow.objects.get(pk=row.pk).version == 2
    row.name = "c"
    assert row.save() is None
    copy = refetch(row)
    copy.save(refetch=True)
    assert copy.version == TriggerRow.objects.get(pk=row.pk).version == 4
    with pytest.raises(RecordModifiedError), transaction.atomic():
        row.save(refetch=True)
    assert TriggerRow.objects.get(pk=row.pk).name == "c"


@pytest.mark.django_db
def test_refetch_after_an_outside_write_is_still_a_conflict() -> None:
    row = TriggerRow.objects.create(name="a")
    TriggerRow.objects.filter(pk=row.pk).update(count=5)  # the trigger bumps the version
    row.name = "mine"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        row.save(refetch=True)
    assert TriggerRow.objects.values_list("name", "count", "version").get(pk=row.pk) == ("a", 5, 2)


@isolate_apps("tests.demo")
def test_refetch_reaches_a_models_own_save_without_the_keyword() -> None:
    calls: list[dict[str, Any]] = []

    class OwnSave(models.Model):
        version = TriggerVersionField()

        class Meta:
            app_label = "demo"

        def save(self, *args: Any, **kwargs: Any) -> None:
            calls.append(kwargs)

    class Child(OwnSave):
        class Meta:
            app_label = "demo"

    obj = OwnSave()
    assert obj.save(refetch=True, update_fields=["version"]) is obj
    assert obj.save(using="default") is None
    assert Child().save(refetch=True) is not None
    assert calls == [{"update_fields": ["version"]}, {"using": "default"}, {}]
    assert OwnSave.save.__name__ == "save"


@pytest.mark.django_db
def test_refetch_is_only_a_trigger_field_keyword() -> None:
    with pytest.raises(TypeError):
        Article(title="a").save(refetch=True)  # type: ignore[call-arg]


# --- ConcurrentForm.save() without is_valid() ------------------------------------


class PlainArticleForm(ConcurrentForm):
    class Meta:
        model = Article
        fields = ["title", "version"]


@pytest.mark.django_db
def test_form_save_without_is_valid_validates_and_saves() -> None:
    article = Article.objects.create(title="a")
    signed = PlainArticleForm(instance=article)["version"].value()
    PlainArticleForm({"title": "b", "version": signed}, instance=article).save()
    article.refresh_from_db()
    assert (article.title, article.version) == ("b", 2)
    created = PlainArticleForm({"title": "new", "version": ""}).save()
    assert (created.title, created.version) == ("new", 1)


@pytest.mark.django_db
def test_form_save_without_is_valid_refuses_a_stale_form_with_djangos_value_error() -> None:
    article = Article.objects.create(title="a")
    signed = PlainArticleForm(instance=article)["version"].value()
    Article.objects.filter(pk=article.pk).update(title="theirs", version=F("version") + 1)
    form = PlainArticleForm({"title": "mine", "version": signed}, instance=article)
    with pytest.raises(ValueError, match="could not be changed because the data didn't validate"):
        form.save()
    assert CHANGED in str(form.non_field_errors())
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("theirs", 2)


@pytest.mark.django_db
def test_form_save_without_is_valid_refuses_a_forged_version() -> None:
    article = Article.objects.create(title="a")
    form = PlainArticleForm({"title": "mine", "version": "1:forged"}, instance=article)
    with pytest.raises(ValueError, match="didn't validate"):
        form.save(commit=False)
    assert Article.objects.values_list("title", "version").get(pk=article.pk) == ("a", 1)


# --- The triggers command from Python, and the trigger API ------------------------


class TriggersFromPythonTests(TransactionTestCase):
    databases = {"default", "other"}

    def tearDown(self) -> None:
        create_triggers(["default", "other"])

    def _call(self, *args: str, **options: Any) -> str:
        out = io.StringIO()
        call_command("triggers", *args, stdout=out, no_color=True, **options)
        return out.getvalue()

    def test_a_single_alias_is_a_string(self) -> None:
        out = self._call("list", database="default")
        assert out.splitlines()[0] == "Database: default"
        assert ROW_TRIGGER in out
        assert "Database: other" not in out
        out = self._call("drop", database="default")
        assert f"{ROW_TRIGGER}  demo.TriggerRow.version  dropped" in out
        assert ROW_TRIGGER not in get_triggers("default")["default"]
        assert ROW_TRIGGER in get_triggers("other")["other"]
        out = self._call("create", database="default")
        assert f"{ROW_TRIGGER}  demo.TriggerRow.version  created" in out
        assert "Database: other" not in out
        assert ROW_TRIGGER in get_triggers("default")["default"]

    def test_lists_and_the_repeatable_option_still_work(self) -> None:
        assert "Database: other" in self._call("list", databases=["default", "other"])
        out = self._call("list", "-d", "default", "--database", "other")
        assert "Database: default" in out and "Database: other" in out

    def test_an_unknown_alias_string_is_a_command_error(self) -> None:
        with pytest.raises(CommandError, match="Unknown database 'nope'"):
            self._call("list", database="nope")

    def test_api_takes_one_alias_as_a_string(self) -> None:
        assert [field.name for field, _existed in drop_triggers("other")["other"]] == ["version", "version"]
        assert list(get_triggers("other")) == ["other"]
        assert get_triggers("other")["other"] == []
        assert all(created for _field, created in create_triggers("other")["other"])
        assert ROW_TRIGGER in get_triggers("other")["other"]

    def test_recreating_triggers_left_by_django_concurrency(self) -> None:
        """The guide's recipe: drop, then create, replaces the old trigger of the same name."""
        _install_legacy_trigger()
        try:
            self._call("drop", database="default")
            self._call("create", database="default")
        finally:
            _drop_legacy_function()
        row = TriggerRow.objects.create(name="a")
        for name in ("b", "c", "d"):
            row.name = name
            row.save()
        assert row.version == TriggerRow.objects.get(pk=row.pk).version == 4
        TriggerRow.objects.filter(pk=row.pk).update(count=1)
        assert TriggerRow.objects.get(pk=row.pk).version == 5

    @pytest.mark.skipif(connection.vendor != "sqlite", reason="the old SQLite trigger adds one more")
    def test_django_concurrency_sqlite_trigger_left_in_place_breaks_the_next_save(self) -> None:
        """Why the guide says to recreate the triggers: the old one bumps a second time."""
        _install_legacy_trigger()
        try:
            row = TriggerRow.objects.create(name="a")
            row.name = "b"
            row.save()
            assert TriggerRow.objects.get(pk=row.pk).version == row.version + 1
        finally:
            self._call("drop", database="default")
            self._call("create", database="default")


def _install_legacy_trigger() -> None:
    """Replace our trigger with one shaped like django-concurrency's (same name)."""
    table, column, pk = "demo_triggerrow", "version", "id"
    drop_triggers("default")
    if connection.vendor == "sqlite":
        statements = [
            f"CREATE TRIGGER {ROW_TRIGGER} AFTER UPDATE ON {table} "
            f"BEGIN UPDATE {table} SET {column} = {column} + 1 WHERE {pk} = NEW.{pk}; END;"
        ]
    elif connection.vendor == "postgresql":
        statements = [
            f"CREATE OR REPLACE FUNCTION func_{ROW_TRIGGER}() RETURNS TRIGGER AS $$ "
            f"BEGIN NEW.{column} = OLD.{column} + 1; RETURN NEW; END; $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER {ROW_TRIGGER} BEFORE UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE PROCEDURE func_{ROW_TRIGGER}()",
        ]
    else:
        statements = [
            f"CREATE TRIGGER {ROW_TRIGGER} BEFORE UPDATE ON {table} "
            f"FOR EACH ROW SET NEW.{column} = OLD.{column} + 1"
        ]
    with connections["default"].cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    assert ROW_TRIGGER in get_triggers("default")["default"]


def _drop_legacy_function() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"DROP FUNCTION IF EXISTS func_{ROW_TRIGGER}()")


def test_trigger_names_match_django_concurrencys() -> None:
    assert get_trigger_name(TriggerRow._meta.get_field("version")) == ROW_TRIGGER


# --- concurrency.utils: fqn, get_classname, flatten ---------------------------------
# The results are those of django-concurrency 2.8.1's helpers (its doctests among them).


class Named:
    def method(self) -> None:
        """A method, named with its class."""

    class Inner:
        pass


def test_fqn_names_classes_their_instances_functions_methods_and_modules() -> None:
    assert fqn(Named) == fqn(Named()) == "tests.system.test_migrating.Named"
    assert fqn(Named.method) == fqn(Named().method) == "tests.system.test_migrating.Named.method"
    assert fqn(Named.Inner) == "tests.system.test_migrating.Named.Inner"
    assert fqn(run_job) == "tests.switching.tasks.run_job"
    assert fqn(Article) == fqn(Article(title="a")) == "tests.demo.models.Article"
    assert fqn(concurrency.conf) == "concurrency.conf"
    assert fqn(str) == "builtins.str"


def test_fqn_of_a_lazy_object_names_the_object_it_stands_for() -> None:
    assert fqn(SimpleLazyObject(lambda: Article(title="a"))) == "tests.demo.models.Article"


def test_fqn_of_a_callable_object_names_its_class() -> None:
    assert fqn(functools.partial(run_job, 1)) == "functools.partial"


@pytest.mark.parametrize("value", ["str", 3, None])
def test_fqn_refuses_what_names_no_module(value: Any) -> None:
    with pytest.raises(ValueError, match=f"^Invalid argument `{value}`$"):
        fqn(value)


def test_get_classname_gives_the_qualified_name() -> None:
    assert get_classname(Named) == get_classname(Named()) == "Named"
    assert get_classname(Named.Inner()) == "Named.Inner"
    assert get_classname(Named.method) == "Named.method"
    assert get_classname(Article.save) == "Model.save"
    assert get_classname(SimpleLazyObject(lambda: Article(title="a"))) == "Article"


def test_flatten_returns_every_nested_item_in_order_and_keeps_strings_whole() -> None:
    nested = [[[1, 2, 3], (42, None)], [4, 5], [6], 7, (8, 9, 10)]
    assert flatten(nested) == [1, 2, 3, 42, None, 4, 5, 6, 7, 8, 9, 10]
    assert flatten([["a", ("bc", [])], "de"]) == ["a", "bc", "de"]
    assert flatten(x for x in ([1], [2, [3]])) == [1, 2, 3]
    assert flatten([]) == []


# --- Migrations: a version field as django-concurrency 2.8.1 wrote it -------------
# Each pair is a declaration and the field django-concurrency 2.8.1's makemigrations
# wrote for it (recorded from a real run on Django 5.2); the autodetector compares
# them as makemigrations does after the switch.

RRN = "record revision number"
WRITTEN = {"default": 0, "help_text": RRN}
KEPT = {"verbose_name": "revision", "db_column": "rev", "help_text": "bumped", "db_tablespace": ""}


def _changes(written: Any, declared: Any) -> list[Any]:
    """Return the operations makemigrations writes for a model whose migration has ``written``."""

    def state(field: Any) -> ProjectState:
        project = ProjectState()
        fields = [("id", models.AutoField(primary_key=True)), ("version", field)]
        project.add_model(ModelState("shop", "Thing", fields))
        return project

    graph = MigrationGraph()
    graph.add_node(("shop", "0001_initial"), None)
    changes = MigrationAutodetector(state(written), state(declared)).changes(graph=graph)
    return [op for migration in changes.get("shop", []) for op in migration.operations]


@pytest.mark.parametrize(
    ("field_class", "args", "kwargs", "written"),
    [
        (AutoIncVersionField, (), {}, WRITTEN),
        (IntegerVersionField, (), {}, WRITTEN),
        (TriggerVersionField, (), {}, WRITTEN),
        (ConditionalVersionField, (), {}, WRITTEN),
        # The options it kept it wrote as given, beside default=0.
        (AutoIncVersionField, (), KEPT, {**KEPT, "default": 0}),
        # This library's own migrations, written before it matched django-concurrency.
        (AutoIncVersionField, (), {}, {}),
        (IntegerVersionField, (), {"db_column": "rev"}, {"db_column": "rev"}),
    ],
)
def test_a_declaration_needs_no_migration_over_what_django_concurrency_wrote(
    field_class: Any, args: Any, kwargs: Any, written: Any
) -> None:
    assert _changes(field_class(**written), field_class(*args, **kwargs)) == []


@pytest.mark.parametrize(
    ("field_class", "args", "kwargs"),
    [
        # django-concurrency dropped every option but five, and positional arguments.
        (AutoIncVersionField, (), {"default": 1}),
        (IntegerVersionField, ("revision",), {}),
        (IntegerVersionField, (), {"editable": False, "blank": True, "db_index": True, "null": True}),
        # It never wrote trigger_name, which CreateTrigger reads from the migration state.
        (TriggerVersionField, (), {"trigger_name": "shop_named"}),
    ],
)
def test_options_django_concurrency_ignored_take_one_alter_field(
    field_class: Any, args: Any, kwargs: Any
) -> None:
    declared = field_class(*args, **kwargs)
    (operation,) = _changes(field_class(**WRITTEN), declared)
    assert type(operation).__name__ == "AlterField"
    assert operation.field.deconstruct()[3] == {**WRITTEN, **declared.deconstruct()[3]}


# --- A project switching from django-concurrency: tests/switching --------------------

SWITCHING_MIGRATION = Path(__file__).parents[1] / "switching" / "migrations" / "0001_initial.py"


def test_the_switching_project_starts() -> None:
    """Its admin imports concurrency.utils helpers while django.setup() autodiscovers it."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-m", "django", "check", "--tag", "admin"],
        cwd=Path(__file__).parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    from tests.switching import admin as switching_admin

    assert switching_admin.logger.name == "tests.switching.models.Job"


@pytest.mark.django_db
def test_the_switching_project_migrates_with_its_django_concurrency_migration_and_needs_no_new_one() -> None:
    written = SWITCHING_MIGRATION.read_text()
    assert written.startswith("# Generated by Django")
    assert "AutoIncVersionField(default=0, help_text='record revision number')" in written
    assert MigrationRecorder(connection).migration_qs.filter(app="switching", name="0001_initial").exists()
    with connection.cursor() as cursor:
        columns = [c.name for c in connection.introspection.get_table_description(cursor, "switching_report")]
    assert "rev" in columns
    out = io.StringIO()
    call_command("makemigrations", "switching", "--check", "--dry-run", stdout=out)
    assert "No changes detected in app 'switching'" in out.getvalue()


class SwitchingBookkeepingTests(TransactionTestCase):
    """In autocommit, as in production: the task's save commits before the bookkeeping save."""

    def test_bookkeeping_under_concurrency_disable_increment_is_refused_and_says_why(self) -> None:
        job = Job.objects.create(name="import")
        with pytest.raises(RecordModifiedError) as info:
            job.enqueue(run_job)
        assert str(info.value) == (
            "Record has been modified (concurrency_disable_increment() disables version increments, "
            "not version checks; use disable_concurrency() to skip the check)"
        )
        assert (info.value.version, info.value.db_version) == (1, 2)
        row = Job.objects.values_list("status", "task_id", "version").get(pk=job.pk)
        assert row == ("done", "", 2)  # the task's save stands; the bookkeeping was not written


class SwitchingProjectTests(TestCase):
    """The switching project behaves as the guide says."""

    def setUp(self) -> None:
        self.job = Job.objects.create(name="import")

    def test_a_conflict_outside_the_switch_keeps_the_plain_message(self) -> None:
        copy = refetch(self.job)
        copy.save()
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            self.job.save()
        assert str(info.value) == "Record has been modified"

    def test_guide_change_disable_concurrency_around_the_bookkeeping(self) -> None:
        with disable_concurrency(self.job):
            self.job.enqueue(run_job)
        row = Job.objects.values_list("status", "task_id", "task_name", "version").get(pk=self.job.pk)
        assert row == ("done", f"task-{self.job.pk}", "tests.switching.tasks.run_job", 2)
        assert self.job.version == 1  # still the version it was loaded with: reload before saving
        with pytest.raises(RecordModifiedError), transaction.atomic():
            self.job.save()
        self.job.refresh_from_db()
        self.job.save()
        assert Job.objects.values_list("status", "version").get(pk=self.job.pk) == ("done", 3)

    def test_guide_change_a_queryset_update_of_the_bookkeeping_fields(self) -> None:
        task_id = run_job(self.job.pk)
        Job.objects.filter(pk=self.job.pk).update(task_id=task_id, task_name=fqn(run_job))
        row = Job.objects.values_list("status", "task_id", "task_name", "version").get(pk=self.job.pk)
        assert row == ("done", task_id, "tests.switching.tasks.run_job", 2)

    def test_plain_model_form_posting_no_version_is_invalid(self) -> None:
        form = JobForm({"name": "renamed"}, instance=self.job)
        assert not form.is_valid()
        assert form.has_error("version", code="missing")
        assert Job.objects.values_list("name", "version").get(pk=self.job.pk) == ("import", 1)

    def test_plain_model_form_recipe_posts_the_forms_initial_version(self) -> None:
        version = JobForm(instance=self.job)["version"].value()
        form = JobForm({"name": "renamed", "version": version}, instance=self.job)
        assert form.is_valid(), form.errors
        form.save()
        assert Job.objects.values_list("name", "version").get(pk=self.job.pk) == ("renamed", 2)

    def test_plain_model_form_recipe_for_a_stale_form_raises_at_save(self) -> None:
        version = JobForm(instance=self.job)["version"].value()
        run_job(self.job.pk)
        form = JobForm({"name": "renamed", "version": version}, instance=self.job)
        assert form.is_valid(), form.errors  # a plain ModelForm has no early check
        with pytest.raises(RecordModifiedError), transaction.atomic():
            form.save()
        row = Job.objects.values_list("name", "status", "version").get(pk=self.job.pk)
        assert row == ("import", "done", 2)

    def test_concurrent_form_recipe_posts_the_forms_initial_version(self) -> None:
        class JobConcurrentForm(ConcurrentForm):
            class Meta:
                model = Job
                fields = ["name", "version"]

        missing = JobConcurrentForm({"name": "renamed"}, instance=self.job)
        assert missing.has_error(NON_FIELD_ERRORS, code="missing")
        version = JobConcurrentForm(instance=self.job)["version"].value()
        run_job(self.job.pk)
        stale = JobConcurrentForm({"name": "renamed", "version": version}, instance=self.job)
        assert stale.has_error(NON_FIELD_ERRORS, code="changed")
        self.job.refresh_from_db()
        version = JobConcurrentForm(instance=self.job)["version"].value()
        form = JobConcurrentForm({"name": "renamed", "version": version}, instance=self.job)
        assert form.is_valid(), form.errors
        form.save()
        assert Job.objects.values_list("name", "version").get(pk=self.job.pk) == ("renamed", 3)

    def test_the_other_models_keep_their_django_concurrency_declarations(self) -> None:
        report = Report.objects.create(title="q1")
        assert report.version > 1  # a time-based IntegerVersionField, in column rev
        label = Label.objects.create(name="red")
        label.colour = "crimson"
        label.save()  # colour is not a checked field
        assert label.version == 1
        label.name = "blue"
        label.save()
        assert label.version == 2
