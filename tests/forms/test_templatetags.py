"""The ``{% load concurrency %}`` filters."""

from __future__ import annotations

from django.template import Context, Template
from django.test import TestCase, override_settings

from concurrency.templatetags.concurrency import identity, is_version, version
from tests.demo.models import Article, ExplicitPk, PlainCounter
from tests.forms.test_forms import ArticleForm


def render(source: str, **context: object) -> str:
    return Template("{% load concurrency %}" + source).render(Context(context))


class IdentityTests(TestCase):
    def test_versioned_object_gives_pk_and_version(self) -> None:
        article = Article.objects.create(title="a")
        assert render("{{ obj|identity }}", obj=article) == f"{article.pk},1"

    def test_unversioned_object_gives_the_pk(self) -> None:
        counter = PlainCounter.objects.create(name="c")
        assert render("{{ obj|identity }}", obj=counter) == str(counter.pk)

    def test_unsaved_or_missing_object_gives_nothing(self) -> None:
        assert render("{{ obj|identity }}", obj=Article(title="new")) == ""
        assert render("{{ obj|identity }}", obj=None) == ""

    def test_pk_is_escaped(self) -> None:
        obj = ExplicitPk.objects.create(code='<b>"&', name="x")
        assert render("{{ obj|identity }}", obj=obj) == "&lt;b&gt;&quot;&amp;,1"
        assert identity(obj) == "&lt;b&gt;&quot;&amp;,1"

    @override_settings(USE_THOUSAND_SEPARATOR=True)
    def test_numbers_are_not_localized(self) -> None:
        article = Article.objects.create(title="a")
        Article.objects.filter(pk=article.pk).update(version=1234567)
        article.refresh_from_db()
        assert render("{{ obj|identity }}", obj=article) == f"{article.pk},1234567"


class VersionTests(TestCase):
    def test_version_of_versioned_object(self) -> None:
        article = Article.objects.create(title="a")
        assert render("{{ obj|version }}", obj=article) == "1"
        assert version(article) == 1

    def test_version_of_unversioned_object_is_empty(self) -> None:
        assert render("[{{ obj|version }}]", obj=PlainCounter(name="c")) == "[]"
        assert render("[{{ obj|version }}]", obj="text") == "[]"


class IsVersionTests(TestCase):
    def test_model_fields(self) -> None:
        assert is_version(Article._meta.get_field("version"))
        assert not is_version(Article._meta.get_field("title"))

    def test_form_and_bound_fields(self) -> None:
        form = ArticleForm(instance=Article.objects.create(title="a"))
        assert is_version(form["version"])
        assert is_version(form.fields["version"])
        assert not is_version(form["title"])
        template = "{% for f in form %}{% if f|is_version %}{{ f.name }}{% endif %}{% endfor %}"
        assert render(template, form=form) == "version"

    def test_other_values(self) -> None:
        assert not is_version(None)
        assert not is_version("version")
