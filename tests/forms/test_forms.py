"""ConcurrentForm, the signed VersionField and VersionWidget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import F
from django.forms.renderers import DjangoTemplates
from django.test import RequestFactory, TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils.encoding import smart_str

from concurrency.api import disable_concurrency
from concurrency.exceptions import RecordModifiedError, VersionChangedError, VersionError
from concurrency.fields import AutoIncVersionField
from concurrency.forms import (
    ConcurrentForm,
    SignedValue,
    VersionField,
    VersionFieldSigner,
    VersionWidget,
    get_signer,
)
from concurrency.signing import sign_version
from tests.demo.models import (
    Article,
    CustomVersionField,
    PlainCounter,
    ProxyArticle,
    SimpleConcurrentModel,
)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).parents[1] / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

CHANGED = "Someone else changed this record after you opened it"
DELETED = "Someone else deleted this record after you opened it"
MISSING = "The version of this record is missing from the form"
INVALID = "The version of this record in the form is not valid"


class DummySigner:
    """The seed's example: does not sign at all."""

    def sign(self, value: Any) -> str:
        return smart_str(value)

    def unsign(self, signed_value: Any) -> str:
        return smart_str(signed_value)


class ArticleForm(ConcurrentForm):
    class Meta:
        model = Article
        fields = ["title", "body", "version"]


class ArticleWidgetForm(ConcurrentForm):
    class Meta:
        model = Article
        fields = ["title", "version"]
        widgets = {"version": VersionWidget}


def posted(form: forms.BaseForm, **changes: Any) -> dict[str, Any]:
    """Return what a browser would post for the unbound ``form``, with ``changes``."""
    data = {}
    for bound in form:
        value = bound.value()
        data[bound.html_name] = "" if value is None else str(bound.field.prepare_value(value))
    data.update(changes)
    return data


def errors_text(form: forms.BaseForm) -> str:
    return " ".join(str(e) for e in form.non_field_errors())


class SignedVersionTests(TestCase):
    def setUp(self) -> None:
        self.article = Article.objects.create(title="orig")

    def test_hidden_input_carries_the_version_signed_for_this_row(self) -> None:
        html = str(ArticleForm(instance=self.article)["version"])
        value = re.search(r'name="version" value="([^"]+)"', html)
        assert value is not None
        assert 'type="hidden"' in html
        assert value.group(1) == sign_version(Article, self.article.pk, 1)
        assert value.group(1).startswith("1:")

    def test_unchanged_submission_saves_and_bumps(self) -> None:
        form = ArticleForm(posted(ArticleForm(instance=self.article), title="new"), instance=self.article)
        assert form.is_valid(), form.errors
        form.save()
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("new", 2)

    def _submit(self, **changes: Any) -> ArticleForm:
        data = posted(ArticleForm(instance=self.article), title="new", **changes)
        article = Article.objects.get(pk=self.article.pk)
        return ArticleForm(data, instance=article)

    def _assert_refused(self, form: ArticleForm, message: str) -> None:
        assert form.is_valid() is False
        assert message in errors_text(form)
        with pytest.raises(ValueError):
            form.save()
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("orig", 1)

    def test_missing_version_is_a_form_error(self) -> None:
        data = posted(ArticleForm(instance=self.article), title="new")
        del data["version"]
        self._assert_refused(ArticleForm(data, instance=self.article), MISSING)

    def test_empty_version_is_a_form_error(self) -> None:
        self._assert_refused(self._submit(version=""), MISSING)

    def test_malformed_version_is_a_form_error(self) -> None:
        for bad in ("abc", "1", "1:", ":", "1:abc:def", "\x00", "9" * 40, "-1:x"):
            with self.subTest(bad=bad):
                self._assert_refused(self._submit(version=bad), INVALID)

    def test_tampered_version_is_a_form_error(self) -> None:
        signature = sign_version(Article, self.article.pk, 1).split(":", 1)[1]
        self._assert_refused(self._submit(version=f"5:{signature}"), INVALID)

    def test_version_signed_for_another_row_is_a_form_error(self) -> None:
        other = Article.objects.create(title="other")
        self._assert_refused(self._submit(version=sign_version(Article, other.pk, 1)), INVALID)

    def test_version_signed_for_another_model_is_a_form_error(self) -> None:
        replay = sign_version(SimpleConcurrentModel, self.article.pk, 1)
        self._assert_refused(self._submit(version=replay), INVALID)

    def test_proxy_and_concrete_model_share_signatures(self) -> None:
        class ProxyForm(ConcurrentForm):
            class Meta:
                model = ProxyArticle
                fields = ["title", "version"]

        proxy = ProxyArticle.objects.get(pk=self.article.pk)
        data = posted(ArticleForm(instance=self.article), title="via proxy")
        form = ProxyForm(data, instance=proxy)
        assert form.is_valid(), form.errors
        form.save()
        assert Article.objects.get(pk=self.article.pk).title == "via proxy"

    def test_bad_input_never_raises_version_error(self) -> None:
        try:
            self._submit(version="garbage").is_valid()
        except VersionError:  # pragma: no cover - the regression this guards against
            pytest.fail("VersionError escaped is_valid()")

    def test_invalid_form_redisplays_posted_version_and_input(self) -> None:
        data = posted(ArticleForm(instance=self.article), title="my words")
        Article.objects.filter(pk=self.article.pk).update(version=F("version") + 1)
        form = ArticleForm(data, instance=self.article)
        assert not form.is_valid()
        html = form.as_div()
        assert f'value="{data["version"]}"' in html
        assert 'value="my words"' in html
        assert CHANGED in html

    def test_version_never_counts_as_a_change(self) -> None:
        form = ArticleForm(posted(ArticleForm(instance=self.article)), instance=self.article)
        assert form.is_valid()
        assert form.changed_data == []


class StaleVersionTests(TestCase):
    def setUp(self) -> None:
        self.article = Article.objects.create(title="orig")

    def test_stale_submission_is_refused_with_a_message(self) -> None:
        first = ArticleForm(instance=Article.objects.get(pk=self.article.pk))
        second = ArticleForm(instance=Article.objects.get(pk=self.article.pk))
        form = ArticleForm(posted(first, title="first"), instance=Article.objects.get(pk=self.article.pk))
        assert form.is_valid()
        form.save()

        form = ArticleForm(posted(second, title="second"), instance=Article.objects.get(pk=self.article.pk))
        assert form.is_valid() is False
        assert CHANGED in errors_text(form)
        assert form.non_field_errors().as_data()[0].code == "changed"
        assert isinstance(form.non_field_errors().as_data()[0], VersionChangedError)
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("first", 2)

    def test_stale_check_costs_one_query(self) -> None:
        data = posted(ArticleForm(instance=self.article), title="x")
        form = ArticleForm(data, instance=self.article)
        with CaptureQueriesContext(connection) as ctx:
            assert form.is_valid()
        assert len(ctx.captured_queries) == 1

    def test_deleted_row_is_refused_with_a_message(self) -> None:
        data = posted(ArticleForm(instance=self.article), title="x")
        Article.objects.filter(pk=self.article.pk).delete()
        form = ArticleForm(data, instance=self.article)
        assert form.is_valid() is False
        assert DELETED in errors_text(form)
        assert not Article.objects.exists()

    def test_change_between_clean_and_save_raises_on_save(self) -> None:
        form = ArticleForm(posted(ArticleForm(instance=self.article), title="late"), instance=self.article)
        assert form.is_valid()
        Article.objects.filter(pk=self.article.pk).update(title="theirs", version=F("version") + 1)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            form.save()
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("theirs", 2)

    def test_save_uses_the_submitted_version_not_the_instance_one(self) -> None:
        data = posted(ArticleForm(instance=self.article), title="stale")
        Article.objects.filter(pk=self.article.pk).update(title="theirs", version=F("version") + 1)
        fresh = Article.objects.get(pk=self.article.pk)
        form = ArticleForm(data, instance=fresh)
        # Skip the early check: the UPDATE itself must still refuse the write.
        form.cleaned_data = {"title": "stale", "body": "", "version": 1}
        form._errors = form.error_class()  # type: ignore[assignment]
        with pytest.raises(RecordModifiedError), transaction.atomic():
            form.save()
        assert Article.objects.get(pk=self.article.pk).title == "theirs"

    def test_commit_false_then_save_is_still_checked(self) -> None:
        form = ArticleForm(posted(ArticleForm(instance=self.article), title="late"), instance=self.article)
        assert form.is_valid()
        obj = form.save(commit=False)
        Article.objects.filter(pk=self.article.pk).update(title="theirs", version=F("version") + 1)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            obj.save()
        assert Article.objects.get(pk=self.article.pk).title == "theirs"

    def test_disabled_checks_let_the_stale_form_overwrite(self) -> None:
        data = posted(ArticleForm(instance=self.article), title="mine")
        Article.objects.filter(pk=self.article.pk).update(title="theirs", version=F("version") + 1)
        with disable_concurrency(Article):
            form = ArticleForm(data, instance=Article.objects.get(pk=self.article.pk))
            assert form.is_valid(), form.errors
            form.save()
        row = Article.objects.get(pk=self.article.pk)
        # Unchecked saves move the version past the row's (core), never back to it.
        assert row.title == "mine"
        assert row.version > 2

    def test_integer_version_field_round_trip(self) -> None:
        class SimpleForm(ConcurrentForm):
            class Meta:
                model = SimpleConcurrentModel
                fields = ["username", "version"]

        obj = SimpleConcurrentModel.objects.create(username="a")
        stale = posted(SimpleForm(instance=obj), username="b")
        form = SimpleForm(posted(SimpleForm(instance=obj), username="c"), instance=obj)
        assert form.is_valid(), form.errors
        form.save()
        form = SimpleForm(stale, instance=SimpleConcurrentModel.objects.get(pk=obj.pk))
        assert not form.is_valid()
        assert CHANGED in errors_text(form)
        assert SimpleConcurrentModel.objects.get(pk=obj.pk).username == "c"


class CustomNameTests(TestCase):
    def test_version_field_with_another_name_and_column(self) -> None:
        class RevisionForm(ConcurrentForm):
            class Meta:
                model = CustomVersionField
                fields = ["name", "revision"]

        obj = CustomVersionField.objects.create(name="a")
        stale = posted(RevisionForm(instance=obj), name="stale")
        form = RevisionForm(posted(RevisionForm(instance=obj), name="b"), instance=obj)
        assert form.is_valid(), form.errors
        form.save()
        form = RevisionForm(stale, instance=CustomVersionField.objects.get(pk=obj.pk))
        assert not form.is_valid()
        assert CHANGED in errors_text(form)
        row = CustomVersionField.objects.get(pk=obj.pk)
        assert (row.name, row.revision) == ("b", 6)


class NewObjectTests(TestCase):
    def test_add_form_needs_no_version(self) -> None:
        form = ArticleForm({"title": "new", "body": ""})
        assert form.is_valid(), form.errors
        article = form.save()
        row = Article.objects.get(pk=article.pk)
        assert (row.title, row.version) == ("new", 1)

    def test_add_form_ignores_a_carried_over_version(self) -> None:
        # "Save as new" posts the original row's version with the new data.
        original = Article.objects.create(title="orig")
        Article.objects.filter(pk=original.pk).update(version=7)
        data = {"title": "copy", "body": "", "version": sign_version(Article, original.pk, 7)}
        form = ArticleForm(data)
        assert form.is_valid(), form.errors
        copy = form.save()
        assert copy.pk != original.pk
        assert Article.objects.get(pk=copy.pk).version == 1

    def test_add_form_renders_an_empty_version(self) -> None:
        html = str(ArticleForm()["version"])
        assert 'type="hidden"' in html


class ConfigurationTests(TestCase):
    def test_form_without_the_version_field_is_improperly_configured(self) -> None:
        class NoVersion(ConcurrentForm):
            class Meta:
                model = Article
                fields = ["title"]

        with pytest.raises(ImproperlyConfigured, match=r"'version' is not among the form's fields"):
            NoVersion()

    def test_excluded_version_is_improperly_configured(self) -> None:
        class Excluded(ConcurrentForm):
            class Meta:
                model = Article
                exclude = ["version"]

        with pytest.raises(ImproperlyConfigured, match="Excluded"):
            Excluded()

    def test_unversioned_model_is_a_plain_model_form(self) -> None:
        class CounterForm(ConcurrentForm):
            class Meta:
                model = PlainCounter
                fields = ["name", "value"]

        counter = PlainCounter.objects.create(name="c")
        form = CounterForm({"name": "c", "value": 3}, instance=counter)
        assert form.is_valid(), form.errors
        form.save()
        assert PlainCounter.objects.get().value == 3

    def test_model_field_formfield_is_the_signed_field(self) -> None:
        assert isinstance(Article._meta.get_field("version").formfield(), VersionField)
        assert isinstance(Article._meta.get_field("version").formfield().widget, forms.HiddenInput)

    def test_plain_model_form_is_signed_and_saves_with_submitted_version(self) -> None:
        plain = forms.modelform_factory(Article, fields=["title", "version"])
        article = Article.objects.create(title="orig")
        data = posted(plain(instance=article), title="mine")
        assert not plain({**data, "version": "2"}, instance=article).is_valid()
        Article.objects.filter(pk=article.pk).update(title="theirs", version=F("version") + 1)
        form = plain(data, instance=Article.objects.get(pk=article.pk))
        assert form.is_valid(), form.errors
        with pytest.raises(RecordModifiedError), transaction.atomic():
            form.save()
        assert Article.objects.get(pk=article.pk).title == "theirs"

    def test_signer_is_reexported(self) -> None:
        signer = get_signer(Article, 1)
        assert isinstance(signer, VersionFieldSigner)
        assert signer.unsign(signer.sign(3)) == "3"

    @override_settings(CONCURRENCY_FIELD_SIGNER="tests.forms.test_forms.DummySigner")
    def test_dummy_signer_from_the_docs_works(self) -> None:
        article = Article.objects.create(title="orig")
        html = str(ArticleForm(instance=article)["version"])
        assert 'value="1"' in html
        form = ArticleForm({"title": "new", "body": "", "version": "1"}, instance=article)
        assert form.is_valid(), form.errors
        form.save()
        stale = ArticleForm({"title": "old", "body": "", "version": "1"}, instance=article)
        assert not stale.is_valid()
        assert CHANGED in errors_text(stale)
        bad = ArticleForm({"title": "old", "body": "", "version": "x"}, instance=article)
        assert not bad.is_valid()
        assert INVALID in errors_text(bad)
        assert Article.objects.get(pk=article.pk).title == "new"


class VersionWidgetTests(TestCase):
    def setUp(self) -> None:
        self.article = Article.objects.create(title="orig")

    def test_meta_widgets_shows_the_revision_number(self) -> None:
        form = ArticleWidgetForm(instance=self.article)
        html = str(form["version"])
        assert '<div class="concurrency-version">1</div>' in html
        assert f'value="{sign_version(Article, self.article.pk, 1)}"' in html
        assert not form["version"].is_hidden

    def test_widget_round_trip(self) -> None:
        data = posted(ArticleWidgetForm(instance=self.article), title="new")
        form = ArticleWidgetForm(data, instance=self.article)
        assert form.is_valid(), form.errors
        form.save()
        assert Article.objects.get(pk=self.article.pk).version == 2

    def test_redisplayed_widget_shows_the_posted_revision(self) -> None:
        data = posted(ArticleWidgetForm(instance=self.article), title="")
        form = ArticleWidgetForm(data, instance=self.article)
        assert not form.is_valid()
        assert '<div class="concurrency-version">1</div>' in str(form["version"])

    def test_render_accepts_a_renderer(self) -> None:
        widget = VersionWidget()
        html = widget.render("version", SignedValue("3:abc", version=3), renderer=DjangoTemplates())
        assert 'value="3:abc"' in html
        assert '<div class="concurrency-version">3</div>' in html
        assert '<div class="concurrency-version">7</div>' in widget.render("v", 7)

    def test_admin_formfield_overrides_choose_the_widget(self) -> None:
        class ArticleAdmin(admin.ModelAdmin):
            fields = ["title", "version"]
            formfield_overrides = {AutoIncVersionField: {"widget": VersionWidget}}

        request = RequestFactory().get("/")
        form_class = ArticleAdmin(Article, admin.site).get_form(request, self.article)
        form = form_class(instance=self.article)
        assert isinstance(form.fields["version"].widget, VersionWidget)
        assert '<div class="concurrency-version">1</div>' in str(form["version"])


@override_settings(ROOT_URLCONF="tests.support.urls_forms", TEMPLATES=TEMPLATES)
class FormViewTests(TestCase):
    def setUp(self) -> None:
        self.article = Article.objects.create(title="orig", body="text")
        self.url = f"/articles/{self.article.pk}/"

    def _form_data(self, **changes: str) -> dict[str, str]:
        html = self.client.get(self.url).content.decode()
        version = re.search(r'name="version" value="([^"]+)"', html)
        assert version is not None
        return {"title": "orig", "body": "text", "version": version.group(1), **changes}

    def test_fresh_post_saves_and_redirects(self) -> None:
        response = self.client.post(self.url, self._form_data(title="mine"))
        assert response.status_code == 302
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("mine", 2)

    def test_second_editor_sees_the_conflict_with_input_kept(self) -> None:
        alice = self._form_data(title="alice")
        bob = self._form_data(title="bob")
        assert self.client.post(self.url, alice).status_code == 302
        response = self.client.post(self.url, bob)
        assert response.status_code == 200
        html = response.content.decode()
        assert CHANGED in html
        assert 'value="bob"' in html
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("alice", 2)

    def test_tampered_post_is_a_form_error_not_a_400_or_500(self) -> None:
        response = self.client.post(self.url, self._form_data(title="x", version="2:forged"))
        assert response.status_code == 200
        assert INVALID in response.content.decode()
        assert Article.objects.get(pk=self.article.pk).title == "orig"

    def test_missing_version_post_is_a_form_error(self) -> None:
        data = self._form_data(title="x")
        del data["version"]
        response = self.client.post(self.url, data)
        assert response.status_code == 200
        assert MISSING in response.content.decode()
        assert Article.objects.get(pk=self.article.pk).title == "orig"

    def test_create_view(self) -> None:
        response = self.client.post("/articles/add/", {"title": "new", "body": ""})
        assert response.status_code == 302
        assert Article.objects.get(title="new").version == 1


class FormsetTests(TestCase):
    def test_each_row_is_signed_for_itself_and_a_stale_row_is_refused(self) -> None:
        formset_class = forms.modelformset_factory(Article, form=ArticleForm, extra=0)
        a = Article.objects.create(title="a")
        b = Article.objects.create(title="b")
        queryset = Article.objects.order_by("pk")
        unbound = formset_class(queryset=queryset)
        data = {
            "form-TOTAL_FORMS": "2",
            "form-INITIAL_FORMS": "2",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
        }
        for form in unbound.forms:
            data.update(posted(form))
        assert data["form-0-version"] == sign_version(Article, a.pk, 1)
        assert data["form-1-version"] == sign_version(Article, b.pk, 1)
        data["form-0-title"], data["form-1-title"] = "a2", "b2"
        Article.objects.filter(pk=b.pk).update(title="theirs", version=F("version") + 1)

        formset = formset_class(data, queryset=queryset)
        assert not formset.is_valid()
        assert formset.forms[0].errors == {}
        assert CHANGED in errors_text(formset.forms[1])
        rows = list(Article.objects.order_by("pk").values_list("title", "version"))
        assert rows == [("a", 1), ("theirs", 2)]

    def test_swapped_row_versions_are_refused(self) -> None:
        formset_class = forms.modelformset_factory(Article, form=ArticleForm, extra=0)
        a = Article.objects.create(title="a")
        b = Article.objects.create(title="b")
        data = {
            "form-TOTAL_FORMS": "2",
            "form-INITIAL_FORMS": "2",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(a.pk),
            "form-0-title": "a2",
            "form-0-version": sign_version(Article, b.pk, 1),
            "form-1-id": str(b.pk),
            "form-1-title": "b2",
            "form-1-version": sign_version(Article, a.pk, 1),
        }
        formset = formset_class(data, queryset=Article.objects.order_by("pk"))
        assert not formset.is_valid()
        assert all(INVALID in errors_text(form) for form in formset.forms)
        assert list(Article.objects.order_by("pk").values_list("title", flat=True)) == ["a", "b"]
