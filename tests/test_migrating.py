"""Code written for django-concurrency runs unchanged (docs/guide/migrating.rst).

The first part is a small project written the django-concurrency way: its
imports, its settings, a ConcurrentModelAdmin, a form with a custom signer,
the middleware and the triggers command called from Python. The tests after
it check each piece of that import surface and the two bugs the switch found.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection, connections, models, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.test import RequestFactory, TestCase, TransactionTestCase, override_settings
from django.test.utils import isolate_apps
from django.urls import path, reverse
from django.utils.encoding import smart_str

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
from concurrency.utils import refetch
from concurrency.views import ConflictResponse, callback, conflict
from tests.admin_forms import form_data
from tests.demo.models import Article, TriggerRow

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
    "CONCURRENCY_FIELD_SIGNER": "tests.test_migrating.DummySigner",
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


@override_settings(ROOT_URLCONF="tests.test_migrating", MIDDLEWARE=MIDDLEWARE, **LEGACY_SETTINGS)
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
@override_settings(CONCURRENCY_HANDLER409="tests.test_migrating.handler409")
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


@pytest.mark.parametrize("signer", [DummySigner, object(), "tests.test_migrating.DummySigner"])
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
