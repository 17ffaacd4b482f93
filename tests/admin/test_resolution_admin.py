"""ConflictResolutionMixin on ConcurrentModelAdmin (the demo's Article admin), through the test client."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.db.models import F
from django.test import Client
from django.urls import reverse

from concurrency.forms import ConcurrentForm
from concurrency.resolution import BASE_FIELD, CHOICE_PREFIX, ConflictResolutionMixin
from concurrency.signing import sign_version
from tests.admin.test_races import OtherConnectionWritesFirst
from tests.demo.models import Article
from tests.support.form_reader import form_data

pytestmark = pytest.mark.urls("tests.support.plain_admin")

RESOLVE_FORM = "concurrency-resolve-form"


def _client(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(username, f"{username}@example.com", "x"))
    return client


def _edit(page: Any, **changes: str) -> dict[str, Any]:
    """Return what the browser posts for the change form in ``page``, with ``changes``."""
    return form_data(page.content, "article_form", _save="Save", **changes)


def _resolve(page: Any, **choices: str) -> dict[str, Any]:
    """Return what the browser posts for the resolution page ``page``, with ``choices``."""
    data = form_data(page.content, RESOLVE_FORM, _save="Save")
    data.update({CHOICE_PREFIX + name: side for name, side in choices.items()})
    return data


def _rows(page: Any) -> dict[str, tuple[str, str, str, str]]:
    return {f.name: (f.base, f.mine, f.theirs, f.status) for f in page.context["merge"].fields}


def _visible(response: Any, start: str = "<body", end: str = "</body>") -> str:
    """Return the text a person reads in ``response`` between two markers (tags and inputs dropped)."""
    html = response.content.decode()
    html = html[html.index(start) : html.index(end, html.index(start))]
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _row(article: Article) -> tuple[str, str, str, int]:
    article.refresh_from_db()
    return article.title, article.body, article.status, article.version


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="Title", body="Body", status="draft")


@pytest.fixture
def url(article: Article) -> str:
    return reverse("admin:demo_article_change", args=[article.pk])


@pytest.fixture
def alice(db: Any) -> Client:
    return _client("alice")


@pytest.fixture
def bob(db: Any) -> Client:
    return _client("bob")


def _bob_saves(bob: Client, url: str, **changes: str) -> None:
    assert bob.post(url, _edit(bob.get(url), **changes)).status_code == 302


@pytest.mark.django_db
class TestCombinedStack:
    def test_demo_admin_uses_the_mixin_on_concurrent_model_admin(self) -> None:
        from django.contrib import admin

        from concurrency.admin import ConcurrentModelAdmin

        model_admin = admin.site._registry[Article]
        assert isinstance(model_admin, ConflictResolutionMixin)
        assert isinstance(model_admin, ConcurrentModelAdmin)

    def test_change_form_carries_signed_version_and_snapshot(self, alice: Client, url: str) -> None:
        html = alice.get(url).content.decode()
        assert html.count(f'name="{BASE_FIELD}"') == 1
        assert 'class="concurrency-version">1<' in html

    def test_fresh_submit_saves(self, alice: Client, url: str, article: Article) -> None:
        response = alice.post(url, _edit(alice.get(url), title="New"))
        assert response.status_code == 302
        assert _row(article) == ("New", "Body", "draft", 2)

    def test_stale_submit_shows_the_three_way_page(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        page = alice.get(url)
        _bob_saves(bob, url, body="Bob's body", status="review")
        response = alice.post(url, _edit(page, title="Alice's title", status="published"))
        assert response.status_code == 409
        assert _rows(response) == {
            "title": ("Title", "Alice's title", "Title", "mine"),
            "status": ("Draft", "Published", "In review", "conflict"),
            "body": ("Body", "Body", "Bob's body", "theirs"),
        }
        html = response.content.decode()
        assert "You started from" in html and "You entered" in html and "Now in the database" in html
        assert "Changed by bob at" in html
        assert 'class="concurrency-conflict"' in html
        assert "concurrency-taken" in html
        assert "errornote" not in html
        assert _row(article) == ("Title", "Bob's body", "review", 2)

    def test_keep_mine_and_take_theirs_save_the_merge_at_the_next_version(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        page = alice.get(url)
        _bob_saves(bob, url, title="Bob's title", body="Bob's body", status="review")
        conflict = alice.post(url, _edit(page, title="Alice's title", status="published"))
        assert {name for name, row in _rows(conflict).items() if row[3] == "conflict"} == {"title", "status"}
        response = alice.post(url, _resolve(conflict, title="mine", status="theirs"))
        assert response.status_code == 302
        assert _row(article) == ("Alice's title", "Bob's body", "review", 3)

    def test_resolution_is_checked_against_the_version_shown(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        page = alice.get(url)
        _bob_saves(bob, url, status="review")
        conflict = alice.post(url, _edit(page, status="published"))
        _bob_saves(bob, url, body="Bob again")
        again = alice.post(url, _resolve(conflict, status="mine"))
        assert again.status_code == 409
        rows = _rows(again)
        assert rows["status"] == ("In review", "Published", "In review", "mine")
        assert rows["body"] == ("Body", "Body", "Bob again", "theirs")
        assert _row(article) == ("Title", "Bob again", "review", 3)
        summary = _visible(again, '<p class="concurrency-summary">', "</p>")
        assert summary == (
            "The record was changed again while you were resolving the conflict, so nothing was saved yet. "
            "No field was changed by both sides, so there is nothing to choose: the changes are merged "
            "below. Check the result, then save."
        )
        assert "0 fields" not in again.content.decode()
        assert alice.post(url, _resolve(again)).status_code == 302
        assert _row(article) == ("Title", "Bob again", "published", 4)

    def test_history_and_the_page_name_only_the_models_fields(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        page = alice.get(url)
        _bob_saves(bob, url, body="Bob's body", status="review")
        entry = LogEntry.objects.get(action_flag=CHANGE)
        assert entry.get_change_message() == "Changed Status and Body."
        history = bob.get(reverse("admin:demo_article_history", args=[article.pk]))
        assert "Changed Status and Body." in _visible(history)
        assert "concurrency" not in _visible(history)
        response = alice.post(url, _edit(page, title="Alice's title", status="published"))
        assert response.status_code == 409
        text = _visible(response)
        assert "concurrency" not in text.lower()
        assert [f.name for f in response.context["merge"].fields] == ["title", "status", "body"]

    def test_who_changed_it_reads_as_one_sentence(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        page = alice.get(url)
        _bob_saves(bob, url, body="Bob's body", status="review")
        response = alice.post(url, _edit(page, title="Alice's title", status="published"))
        who = _visible(response, '<ul class="concurrency-who">', "</ul>")
        assert re.fullmatch(r"Changed by bob at \S.*\S: Changed Status and Body\.", who), who
        assert ".." not in who and ". (" not in who

    def test_page_without_conflicts_says_there_is_nothing_to_choose(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        page = alice.get(url)
        _bob_saves(bob, url, body="Bob's body")
        response = alice.post(url, _edit(page, title="Alice's title"))
        assert response.status_code == 409
        summary = _visible(response, '<p class="concurrency-summary">', "</p>")
        assert summary == (
            "No field was changed by both sides, so there is nothing to choose: the changes are merged "
            "below. Check the result, then save."
        )

    def test_forged_version_on_the_resolution_page_is_a_form_error(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        page = alice.get(url)
        _bob_saves(bob, url, status="review")
        conflict = alice.post(url, _edit(page, status="published"))
        data = _resolve(conflict, status="mine")
        data["version"] = sign_version(Article, article.pk + 1, 2)
        response = alice.post(url, data)
        assert response.status_code == 200
        assert "not valid" in response.content.decode()
        assert _row(article) == ("Title", "Body", "review", 2)

    def test_missing_snapshot_falls_back_to_the_form_error(
        self, alice: Client, bob: Client, url: str, article: Article
    ) -> None:
        data = _edit(alice.get(url), title="Mine")
        del data[BASE_FIELD]
        _bob_saves(bob, url, body="Bob's body")
        response = alice.post(url, data)
        assert response.status_code == 200
        assert "Someone else changed this record" in response.content.decode()
        assert _row(article) == ("Title", "Bob's body", "draft", 2)

    def test_write_after_validation_shows_the_page(
        self, alice: Client, url: str, article: Article, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data = _edit(alice.get(url), title="Mine")
        Article.objects.filter(pk=article.pk).update(body="theirs", version=F("version") + 1)
        # The other write lands after both early checks (the mixin's and the
        # form's) and before the UPDATE, which then matches no row.
        resolve = ConflictResolutionMixin._resolve
        calls: list[str] = []

        def after_the_check(self: Any, request: Any, object_id: str) -> Any:
            calls.append(object_id)
            return None if len(calls) == 1 else resolve(self, request, object_id)

        monkeypatch.setattr(ConflictResolutionMixin, "_resolve", after_the_check)
        monkeypatch.setattr(ConcurrentForm, "_check_current", lambda self, version: None)
        response = alice.post(url, data)
        assert len(calls) == 2
        assert response.status_code == 409
        assert _rows(response)["body"] == ("Body", "Body", "theirs", "theirs")
        assert _row(article) == ("Title", "theirs", "draft", 2)
        monkeypatch.undo()
        assert alice.post(url, _resolve(response)).status_code == 302
        assert _row(article) == ("Mine", "theirs", "draft", 3)

    def test_view_only_user_gets_the_read_only_page(self, article: Article, url: str) -> None:
        viewer = User.objects.create_user("viewer", password="x", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_article"))
        client = Client()
        client.force_login(viewer)
        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert "Title" in html and BASE_FIELD not in html
        assert client.post(url, {"title": "Nope", BASE_FIELD: "x"}).status_code == 403
        assert _row(article) == ("Title", "Body", "draft", 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(settings.DB == "sqlite", reason="SQLite admits one writer at a time")
def test_other_connection_writing_before_the_update_shows_the_page(alice: Client) -> None:
    article = Article.objects.create(title="Title", body="Body", status="draft")
    url = reverse("admin:demo_article_change", args=[article.pk])
    data = _edit(alice.get(url), title="Mine")
    with OtherConnectionWritesFirst(article, body="theirs") as race:
        response = alice.post(url, data)
    assert race.fired
    assert response.status_code == 409
    assert _rows(response)["body"] == ("Body", "Body", "theirs", "theirs")
    assert _row(article) == ("Title", "theirs", "draft", 2)
    assert alice.post(url, _resolve(response)).status_code == 302
    assert _row(article) == ("Mine", "theirs", "draft", 3)
