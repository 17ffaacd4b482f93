"""A change form posted after someone else deleted the object: the input is kept, "Save as new" offered."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.db.models.signals import pre_save
from django.test import Client
from django.urls import reverse

from concurrency.compat import DJANGO_61
from tests.demo.models import Article, Category, Item
from tests.support.form_reader import form_data
from tests.support.races import as_other_user

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.plain_admin")]

GONE = "This article was deleted by someone else while you were editing it, so your changes were not saved."


def _change_url(obj: Any, site: str = "admin") -> str:
    return reverse(f"{site}:demo_{obj._meta.model_name}_change", args=[obj.pk])


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _user(*codenames: str) -> Client:
    user = User.objects.create_user("editor", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("site", ["admin", "bare"])
def test_deleted_while_editing_shows_the_input_and_save_as_new(admin_client: Client, site: str) -> None:
    """Both with ConflictResolutionMixin (the demo's admin) and without it."""
    article = Article.objects.create(title="Original", body="text", status="draft")
    pk = article.pk
    url = _change_url(article, site)
    data = form_data(admin_client.get(url).content, "article_form", title="Mine", body="My long text")
    Article.objects.filter(pk=pk).delete()

    response = admin_client.post(url, data)
    assert response.status_code == 409
    html = response.content.decode()
    assert messages_of(response) == [
        f"{GONE} Your input is kept below: “Save as new” adds it as a new article."
    ]
    # A message, not a form error: nothing in the form is wrong.
    assert "Please correct" not in html and "errornote" not in html and "errorlist" not in html
    assert f"ID “{pk}”" not in html
    assert 'value="Mine"' in html and "My long text" in html
    assert 'name="_saveasnew"' in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert "doesn’t exist" not in html
    assert not Article.objects.exists()

    again = form_data(html, "article_form")
    again["_saveasnew"] = "Save as new"
    created = admin_client.post(url, again)
    assert created.status_code == 302
    new = Article.objects.get()
    assert (new.title, new.body, new.status, new.version) == ("Mine", "My long text", "draft", 1)
    assert new.pk != pk


def test_deleted_with_inlines_saves_them_as_new_rows(admin_client: Client) -> None:
    category = Category.objects.create(name="Tools")
    Item.objects.create(category=category, name="hammer")
    Item.objects.create(category=category, name="saw")
    url = _change_url(category)
    data = form_data(admin_client.get(url).content, "category_form", name="Tools renamed")
    data["items-0-name"] = "big hammer"
    category.delete()

    response = admin_client.post(url, data)
    assert response.status_code == 409
    html = response.content.decode()
    assert messages_of(response)[0].startswith("This category was deleted by someone else")
    assert 'value="big hammer"' in html and 'value="saw"' in html
    again = form_data(html, "category_form")
    again["_saveasnew"] = "Save as new"
    assert admin_client.post(url, again).status_code == 302
    new = Category.objects.get()
    assert new.name == "Tools renamed"
    assert sorted(new.items.values_list("name", flat=True)) == ["big hammer", "saw"]


def test_a_record_deleted_in_the_admin_is_named_as_it_was_stored(admin_client: Client) -> None:
    """The admin log keeps the name it had when deleted; the user's own typing never names it."""
    article = Article.objects.create(title="Roadmap", body="text", status="draft")
    url = _change_url(article)
    data = form_data(admin_client.get(url).content, "article_form", title="Roadmap (plain B)")
    alice = Client()
    alice.force_login(User.objects.create_superuser("alice", "alice@example.com", "x"))
    delete = reverse("admin:demo_article_delete", args=[article.pk])
    confirm = form_data(alice.get(delete).content, None)
    assert alice.post(delete, {**confirm, "post": "yes"}).status_code == 302
    assert not Article.objects.exists()

    response = admin_client.post(url, data)
    assert response.status_code == 409
    assert messages_of(response) == [
        "Article “Roadmap” was deleted by someone else while you were editing it, so your changes were "
        "not saved. Your input is kept below: “Save as new” adds it as a new article."
    ]
    assert 'value="Roadmap (plain B)"' in response.content.decode()
    # A form without a version signed for this object did not come from a page that showed it.
    data["version"] = "1:forged"
    assert messages_of(admin_client.post(url, data))[-1].startswith(GONE)


def test_invalid_input_for_a_deleted_record_is_still_shown_as_an_error(admin_client: Client) -> None:
    article = Article.objects.create(title="Original", status="draft")
    url = _change_url(article)
    data = form_data(admin_client.get(url).content, "article_form", title="")
    Article.objects.filter(pk=article.pk).delete()
    response = admin_client.post(url, data)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Please correct the error below." in html and "This field is required." in html
    assert messages_of(response)[0].startswith(GONE)


def test_user_who_may_not_add_sees_the_input_without_save_as_new() -> None:
    client = _user("change_article", "view_article")
    article = Article.objects.create(title="Original", status="draft")
    url = _change_url(article)
    data = form_data(client.get(url).content, "article_form", title="Mine")
    Article.objects.filter(pk=article.pk).delete()
    response = client.post(url, data)
    assert response.status_code == 409
    html = response.content.decode()
    assert messages_of(response) == [f"{GONE} Your input is kept below so that you can copy it."]
    assert "Mine" in html
    assert 'name="_saveasnew"' not in html and 'name="_save"' not in html
    # Django's own permission check still applies to a forged "Save as new".
    assert client.post(url, {**data, "_saveasnew": "1"}).status_code == 403
    assert not Article.objects.exists()


def test_user_who_may_not_change_gets_djangos_answer() -> None:
    client = _user("view_article")
    article = Article.objects.create(title="Original", status="draft")
    url = _change_url(article)
    Article.objects.filter(pk=article.pk).delete()
    response = client.post(url, {"title": "Mine"})
    # Django's own path: 403 on Django 5.2; 6.1 looks the object up first and
    # redirects to the admin index ("doesn't exist"). Never the input page.
    if DJANGO_61:
        assert response.status_code == 302
        assert response["Location"] == reverse("admin:index")
    else:
        assert response.status_code == 403
    assert not Article.objects.filter(pk=article.pk).exists()


class OtherConnectionDeletesFirst:
    """On the first save of ``target``, let another connection delete its row and commit."""

    def __init__(self, target: Article) -> None:
        self.target, self.fired = target, False

    def _delete(self) -> None:
        Article.objects.filter(pk=self.target.pk).delete()

    def __call__(self, sender: Any, instance: Article, **kwargs: Any) -> None:
        if not self.fired and instance.pk == self.target.pk:
            self.fired = True
            as_other_user(self._delete)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(settings.DB == "sqlite", reason="SQLite admits one writer at a time")
@pytest.mark.parametrize("site", ["admin", "bare"])
def test_deleted_after_validation_shows_the_input(admin_client: Client, site: str) -> None:
    """The delete lands after the early checks, before the UPDATE, which then matches no row."""
    article = Article.objects.create(title="Original", status="draft")
    url = _change_url(article, site)
    data = form_data(admin_client.get(url).content, "article_form", title="Mine")
    race = OtherConnectionDeletesFirst(article)
    pre_save.connect(race, sender=Article, weak=False)
    try:
        response = admin_client.post(url, data)
    finally:
        pre_save.disconnect(race, sender=Article)
    assert race.fired
    assert response.status_code == 409
    html = response.content.decode()
    assert messages_of(response)[0].startswith(GONE)
    assert 'value="Mine"' in html and 'name="_saveasnew"' in html
    assert not Article.objects.exists()
