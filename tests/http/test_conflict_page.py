"""The default 409 page shows only the fields the refused write submitted (issue #11, item 3)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import path

from concurrency.views import ConflictResponse, conflict
from tests.demo.models import Article

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.http.test_conflict_page"),
]

THEIR_BODY = "their confidential body"


def edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Apply the submitted fields to a row someone else changes meanwhile (title, body and status)."""
    article = Article.objects.get(pk=pk)
    Article.objects.filter(pk=pk).update(
        title="theirs", body=THEIR_BODY, status="review", version=F("version") + 1
    )
    for name in ("title", "body", "status"):
        if name in request.POST:
            setattr(article, name, request.POST[name])
    article.save()
    return HttpResponse("saved")


def wider_handler(request: HttpRequest, target: Any = None) -> ConflictResponse:
    """A project's own handler: this site may show the body too."""
    return conflict(request, target, fields=["title", "body"])


urlpatterns = [path("edit/<int:pk>/", edit)]

WITH_MIDDLEWARE = [*settings.MIDDLEWARE, "concurrency.middleware.ConcurrencyMiddleware"]


def rows(html: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r'<th scope="row">([^<]*)</th><td>([^<]*)</td><td>([^<]*)</td>', html)
    return {label: (theirs, mine) for label, theirs, mine in found}


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="original", body="original body", status="draft")


@override_settings(MIDDLEWARE=WITH_MIDDLEWARE)
def test_the_page_compares_only_what_the_write_submitted(client: Any, article: Article) -> None:
    response = client.post(f"/edit/{article.pk}/", {"title": "mine"})
    assert response.status_code == 409
    html = response.content.decode()
    assert rows(html) == {"Title": ("theirs", "mine")}
    assert THEIR_BODY not in html and "review" not in html.lower().replace("in review", "")
    assert "Body" not in html and "Status" not in html
    row = Article.objects.get(pk=article.pk)
    assert (row.title, row.body, row.version) == ("theirs", THEIR_BODY, 2)


@override_settings(MIDDLEWARE=WITH_MIDDLEWARE)
def test_every_submitted_field_is_compared(client: Any, article: Article) -> None:
    response = client.post(f"/edit/{article.pk}/", {"title": "mine", "status": "published"})
    assert response.status_code == 409
    assert rows(response.content.decode()) == {
        "Title": ("theirs", "mine"),
        "Status": ("review", "published"),
    }
    assert THEIR_BODY not in response.content.decode()


@override_settings(MIDDLEWARE=WITH_MIDDLEWARE)
def test_a_write_that_submitted_nothing_shows_no_field(client: Any, article: Article) -> None:
    response = client.post(f"/edit/{article.pk}/", {"unrelated": "x"})
    assert response.status_code == 409
    html = response.content.decode()
    assert rows(html) == {} and "Fields that differ" not in html
    assert THEIR_BODY not in html and "theirs" not in html


@override_settings(
    MIDDLEWARE=WITH_MIDDLEWARE, CONCURRENCY_HANDLER409="tests.http.test_conflict_page.wider_handler"
)
def test_a_project_handler_widens_the_comparison(client: Any, article: Article) -> None:
    response = client.post(f"/edit/{article.pk}/", {"title": "mine"})
    assert response.status_code == 409
    assert rows(response.content.decode()) == {
        "Title": ("theirs", "mine"),
        "Body": (THEIR_BODY, "original body"),
    }


# -- the record is named as stored, never by what the user sent (issue #22, item 3) -------------


def message(html: str) -> str:
    found = re.search(r'<p class="concurrency-message">([^<]*)</p>', html)
    assert found is not None
    return found[1]


@override_settings(MIDDLEWARE=WITH_MIDDLEWARE)
def test_the_record_is_named_as_stored_not_by_the_users_text(client: Any, article: Article) -> None:
    response = client.post(f"/edit/{article.pk}/", {"title": "Roadmap (plain B)", "body": "mine"})
    assert response.status_code == 409
    html = response.content.decode()
    assert message(html) == (
        "Someone else changed “theirs” while you were editing it, so your changes were not saved."
    )
    # What the user sent is in the comparison, as theirs, and nowhere else.
    assert rows(html)["Title"] == ("theirs", "Roadmap (plain B)")
    assert html.count("Roadmap (plain B)") == 1


@override_settings(MIDDLEWARE=WITH_MIDDLEWARE)
def test_a_write_that_sent_no_named_field_keeps_the_views_name(client: Any, article: Article) -> None:
    """The body is not in the name: the row is named from the view's own copy, not from the stored row."""
    response = client.post(f"/edit/{article.pk}/", {"body": "mine"})
    assert response.status_code == 409
    assert message(response.content.decode()).startswith("Someone else changed “original”")


def delete_then_save(request: HttpRequest, pk: int) -> HttpResponse:
    article = Article.objects.get(pk=pk)
    Article.objects.filter(pk=pk).delete()
    for name in ("title", "body"):
        if name in request.POST:
            setattr(article, name, request.POST[name])
    article.save()
    return HttpResponse("saved")


urlpatterns.append(path("delete-then-save/<int:pk>/", delete_then_save))


@override_settings(MIDDLEWARE=WITH_MIDDLEWARE)
def test_a_deleted_record_is_not_named_by_the_users_text(client: Any, article: Article) -> None:
    response = client.post(f"/delete-then-save/{article.pk}/", {"title": "Roadmap (plain B)"})
    assert response.status_code == 409
    html = response.content.decode()
    assert message(html) == "Someone else deleted this record while you were editing it."
    assert "Roadmap (plain B)" not in html
