"""Resolving a refused admin change field by field (concurrency.resolution)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission, User
from django.test import Client, TestCase, override_settings

from concurrency.resolution import BASE_FIELD, CHOICE_PREFIX
from tests.demo.models import Article, Category, Stock

URL = "/admin/demo/article/{}/change/"


def _form_post(response: Any, **changes: Any) -> dict[str, Any]:
    """Return what the browser would post for the change form in ``response``, with ``changes``."""
    form = response.context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {name: "" if value is None else value for name, value in data.items()}
    data.update(changes, _save="Save")
    return data


def _resolution_post(response: Any, **choices: str) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for key, value in response.context["hidden"]:
        data.setdefault(key, []).append(value)
    for name, side in choices.items():
        data[CHOICE_PREFIX + name] = [side]
    data["_save"] = ["Save"]
    return data


@override_settings(ROOT_URLCONF="tests.support.resolution_urls")
class ResolutionTests(TestCase):
    def setUp(self) -> None:
        self.article = Article.objects.create(title="Title", body="Body", status="draft")
        self.alice = Client()
        self.alice.force_login(User.objects.create(username="alice", is_staff=True, is_superuser=True))
        self.bob = Client()
        self.bob.force_login(User.objects.create(username="bob", is_staff=True, is_superuser=True))
        self.url = URL.format(self.article.pk)

    def _bob_saves(self, **changes: Any) -> None:
        response = self.bob.post(self.url, _form_post(self.bob.get(self.url), **changes))
        assert response.status_code == 302

    def test_unconflicted_save_is_a_plain_save(self) -> None:
        response = self.alice.post(self.url, _form_post(self.alice.get(self.url), title="New"))
        assert response.status_code == 302
        row = Article.objects.get()
        assert (row.title, row.version) == ("New", 2)

    def test_stale_submit_shows_three_way_comparison(self) -> None:
        page = self.alice.get(self.url)
        self._bob_saves(body="Bob's body", status="review")
        response = self.alice.post(self.url, _form_post(page, title="Alice's title", status="published"))
        assert response.status_code == 409
        merge = response.context["merge"]
        rows = {f.name: (f.base, f.mine, f.theirs, f.status) for f in merge.fields}
        assert rows == {
            "title": ("Title", "Alice's title", "Title", "mine"),
            "body": ("Body", "Body", "Bob's body", "theirs"),
            "status": ("Draft", "Published", "In review", "conflict"),
        }
        content = response.content.decode()
        assert "Changed by bob at" in content
        # Nothing is preselected for the field both changed: the user must choose.
        assert 'name="_concurrency_choice-status" value="mine" required>' in content
        assert "checked" not in content
        # Nothing was written by the refused submit.
        row = Article.objects.get()
        assert (row.title, row.body, row.status, row.version) == ("Title", "Bob's body", "review", 2)

    def test_resolving_merges_and_saves_against_the_shown_version(self) -> None:
        page = self.alice.get(self.url)
        self._bob_saves(body="Bob's body", status="review")
        conflict = self.alice.post(self.url, _form_post(page, title="Alice's title", status="published"))
        response = self.alice.post(self.url, _resolution_post(conflict, status="mine"))
        assert response.status_code == 302
        row = Article.objects.get()
        assert (row.title, row.body, row.status, row.version) == (
            "Alice's title",
            "Bob's body",
            "published",
            3,
        )

    def test_take_theirs(self) -> None:
        page = self.alice.get(self.url)
        self._bob_saves(status="review")
        conflict = self.alice.post(self.url, _form_post(page, status="published", title="Mine"))
        self.alice.post(self.url, _resolution_post(conflict, status="theirs"))
        row = Article.objects.get()
        assert (row.title, row.status, row.version) == ("Mine", "review", 3)

    def test_row_changed_again_while_resolving_shows_the_page_again(self) -> None:
        page = self.alice.get(self.url)
        self._bob_saves(status="review")
        conflict = self.alice.post(self.url, _form_post(page, status="published"))
        self._bob_saves(body="Bob again")
        again = self.alice.post(self.url, _resolution_post(conflict, status="mine"))
        assert again.status_code == 409
        rows = {f.name: (f.base, f.mine, f.theirs, f.status) for f in again.context["merge"].fields}
        # The base is now what the first resolution page showed; "mine" is the merge.
        assert rows["status"] == ("In review", "Published", "In review", "mine")
        assert rows["body"] == ("Body", "Body", "Bob again", "theirs")
        self.alice.post(self.url, _resolution_post(again))
        row = Article.objects.get()
        assert (row.status, row.body, row.version) == ("published", "Bob again", 4)

    def test_same_change_on_both_sides_is_not_a_conflict(self) -> None:
        page = self.alice.get(self.url)
        self._bob_saves(title="Fixed typo")
        conflict = self.alice.post(self.url, _form_post(page, title="Fixed typo"))
        statuses = {f.name: f.status for f in conflict.context["merge"].fields}
        assert statuses == {"title": "same", "body": "unchanged", "status": "unchanged"}
        assert conflict.context["merge"].conflicts == []

    def test_without_admin_log_the_page_still_explains(self) -> None:
        page = self.alice.get(self.url)
        Article.objects.filter(pk=self.article.pk).update(body="Changed by a script", version=2)
        response = self.alice.post(self.url, _form_post(page, title="Mine"))
        assert response.status_code == 409
        assert "Someone else changed this record after you opened it" in response.content.decode()

    def test_tampered_snapshot_is_ignored(self) -> None:
        page = self.alice.get(self.url)
        data = _form_post(page, title="Mine")
        data[BASE_FIELD] = data[BASE_FIELD][:-3] + "xyz"
        response = self.alice.post(self.url, data)
        assert response.status_code == 302
        assert Article.objects.get().title == "Mine"

    def test_foreign_keys_and_numbers_merge(self) -> None:
        shelf, cellar = Category.objects.create(name="shelf"), Category.objects.create(name="cellar")
        stock = Stock.objects.create(name="apples", quantity=5, category=shelf)
        url = f"/admin/demo/stock/{stock.pk}/change/"
        page = self.alice.get(url)
        bob = _form_post(self.bob.get(url), category=cellar.pk, quantity=7)
        assert self.bob.post(url, bob).status_code == 302
        conflict = self.alice.post(url, _form_post(page, quantity=9, name="green apples"))
        rows = {f.name: (f.base, f.mine, f.theirs, f.status) for f in conflict.context["merge"].fields}
        assert rows == {
            "name": ("apples", "green apples", "apples", "mine"),
            "quantity": ("5", "9", "7", "conflict"),
            "category": (str(shelf), str(shelf), str(cellar), "theirs"),
        }
        assert self.alice.post(url, _resolution_post(conflict, quantity="theirs")).status_code == 302
        row = Stock.objects.get()
        assert (row.name, row.quantity, row.category_id, row.version) == ("green apples", 7, cellar.pk, 3)

    def test_snapshot_is_rendered_once_and_view_only_users_see_the_form(self) -> None:
        stock = Stock.objects.create(name="apples")
        for url in (self.url, f"/admin/demo/stock/{stock.pk}/change/"):
            assert self.alice.get(url).content.decode().count(f'name="{BASE_FIELD}"') == 1
        viewer = User.objects.create(username="viewer", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_article"))
        client = Client()
        client.force_login(viewer)
        response = client.get(self.url)
        assert response.status_code == 200
        assert "Title" in response.content.decode()

    def test_write_after_the_check_shows_the_page_on_a_plain_model_admin(self) -> None:
        from unittest import mock

        from concurrency.resolution import ConflictResolutionMixin

        data = _form_post(self.alice.get(self.url), title="Mine")
        Article.objects.filter(pk=self.article.pk).update(body="theirs", version=2)
        resolve = ConflictResolutionMixin._resolve
        calls: list[str] = []

        def after_the_check(admin: Any, request: Any, object_id: str) -> Any:
            # The other write lands after the mixin's check; the UPDATE then matches no row.
            calls.append(object_id)
            return None if len(calls) == 1 else resolve(admin, request, object_id)

        with mock.patch.object(ConflictResolutionMixin, "_resolve", after_the_check):
            response = self.alice.post(self.url, data)
        assert (len(calls), response.status_code) == (2, 409)
        rows = {f.name: f.status for f in response.context["merge"].fields}
        assert rows == {"title": "mine", "body": "theirs", "status": "unchanged"}
        row = Article.objects.get()
        assert (row.title, row.body, row.version) == ("Title", "theirs", 2)
