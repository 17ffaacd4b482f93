"""A second database connection writes between validation and the UPDATE (PostgreSQL, MariaDB).

On SQLite the admin's transaction holds the database's write lock from its
start, so no other connection can write in between; the same paths are
covered there by tests/admin/test_admin.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.db.models import F
from django.db.models.signals import pre_save
from django.urls import reverse

from tests.demo.models import Article
from tests.support.form_reader import form_data
from tests.support.races import as_other_user

pytestmark = [
    pytest.mark.race,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.support.plain_admin"),
    pytest.mark.skipif(settings.DB == "sqlite", reason="SQLite admits one writer at a time"),
]


class OtherConnectionWritesFirst:
    """On the first save of ``target``, let another connection change its row and commit."""

    def __init__(self, target: Article, **values: Any) -> None:
        self.target, self.values, self.fired = target, values, False

    def _write(self) -> None:
        Article.objects.filter(pk=self.target.pk).update(version=F("version") + 1, **self.values)

    def __call__(self, sender: Any, instance: Article, **kwargs: Any) -> None:
        if not self.fired and instance.pk == self.target.pk:
            self.fired = True
            as_other_user(self._write)

    def __enter__(self) -> OtherConnectionWritesFirst:
        pre_save.connect(self, sender=Article, weak=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        pre_save.disconnect(self, sender=Article)


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_change_form_save_refused_by_the_database_is_shown_on_the_form(admin_client: Any) -> None:
    article = Article.objects.create(title="Original", body="text")
    url = reverse("bare:demo_article_change", args=[article.pk])
    data = form_data(admin_client.get(url).content, "article_form", title="Mine")
    with OtherConnectionWritesFirst(article, body="theirs") as race:
        response = admin_client.post(url, data)
    assert race.fired
    assert response.status_code == 200
    html = response.content.decode()
    assert "Someone else changed this record" in html
    assert 'value="Mine"' in html
    assert not any("successfully" in m for m in texts(response))
    article.refresh_from_db()
    assert (article.title, article.body, article.version) == ("Original", "theirs", 2)


def test_list_editable_save_refused_by_the_database_is_redone_under_the_policy(admin_client: Any) -> None:
    rows = [Article.objects.create(title=f"Row {n}") for n in range(3)]
    url = reverse("admin:demo_article_changelist")
    data = form_data(admin_client.get(url).content, "changelist-form", _save="Save")
    for key in ("action", "select_across", "_selected_action"):
        data.pop(key, None)
    data["form-0-status"] = "published"
    data["form-1-title"] = "Mine"
    with OtherConnectionWritesFirst(rows[0], title="Theirs") as race:
        response = admin_client.post(url, data)
    assert race.fired
    assert response.status_code == 302
    success, warning = texts(response)
    assert success == "1 article was changed successfully."
    assert "“Theirs”" in warning
    first, second, _third = Article.objects.order_by("pk")
    assert (first.title, first.status, first.version) == ("Theirs", "draft", 2)
    assert (second.title, second.version) == ("Mine", 2)


def test_inline_row_changed_after_validation_is_marked_and_named_as_stored(admin_client: Any) -> None:
    """The UPDATE of an inline row matches nothing: the row is marked, named as the other saved it."""
    from tests.demo.models import Category, Item

    category = Category.objects.create(name="Tools")
    item = Item.objects.create(category=category, name="hammer")
    url = reverse("admin:demo_category_change", args=[category.pk])
    data = form_data(admin_client.get(url).content, "category_form")
    data["items-0-name"] = "Bob's hammer"
    fired = []

    def other_person_first(sender: Any, instance: Item, **kwargs: Any) -> None:
        if fired or instance.pk != item.pk:
            return
        fired.append(True)

        def write() -> None:
            Item.objects.filter(pk=item.pk).update(name="Alice's hammer", version=F("version") + 1)

        as_other_user(write)

    pre_save.connect(other_person_first, sender=Item, weak=False)
    try:
        response = admin_client.post(url, data)
    finally:
        pre_save.disconnect(other_person_first, sender=Item)
    assert fired
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        "Someone else changed one of the items on this page after you opened it, so your changes were not "
        "saved."
    ) in html
    formset = response.context["inline_admin_formsets"][0].formset
    assert [str(e) for e in formset.forms[0].non_field_errors()] == [
        "Someone else changed item “Alice's hammer” after you opened this page, so your changes were not "
        "saved. Reload the page to see its current values."
    ]
    assert "“Bob" not in html and 'value="Bob&#x27;s hammer"' in html
    item.refresh_from_db()
    category.refresh_from_db()
    assert (item.name, item.version, category.version) == ("Alice's hammer", 2, 1)
