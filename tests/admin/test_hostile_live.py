"""Hostile ``since`` values sent to the live "changed since you opened it" endpoint.

Every value of ``SINCE`` in tests/support/hostile.py, sent to the admin's endpoint and
to ``concurrency.urls`` for a row that changed (the admin log is asked about
it), for a row deleted in the admin (with the page's genuine tag) and for an
unchanged row, must be a 400 with one body: never a 500, and never an answer
that depends on the row. Each attempt is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import Client

from concurrency.http import make_etag
from tests.demo.models import Article
from tests.support.hostile import count, report, since_values

pytestmark = [pytest.mark.hostile, pytest.mark.django_db, pytest.mark.urls("tests.support.urls_live")]

BAD_SINCE = {"detail": "“since” is not a date and time with a UTC offset."}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print("\n" + report("live."))


@pytest.fixture
def alice() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("alice", "alice@example.com", "pw"))
    return client


def _edit_in_admin(client: Client, article: Article, title: str) -> None:
    """Save the change form as a person would, so the admin log names them."""
    page = client.get(f"/admin/demo/article/{article.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in ("title", "status", "body", "version", "_concurrency_base")}
    data["title"] = title
    assert client.post(f"/admin/demo/article/{article.pk}/change/", data).status_code == 302


def test_every_malformed_since_is_a_400_on_both_endpoints(admin_client: Any, alice: Client) -> None:
    unchanged = Article.objects.create(title="unchanged")
    changed = Article.objects.create(title="changed")
    deleted = Article.objects.create(title="deleted")
    tags = {row.pk: make_etag(row) for row in (unchanged, changed, deleted)}
    _edit_in_admin(alice, changed, "changed by alice")
    alice.post(f"/admin/demo/article/{deleted.pk}/delete/", {"post": "yes"})
    Article.objects.filter(pk=deleted.pk).delete()
    before = list(Article.objects.order_by("pk").values_list("pk", "title", "version"))
    for kind, value in since_values():
        for pk, tag in tags.items():
            for endpoint in (
                f"/admin/demo/article/{pk}/version/",
                f"/concurrency/version/demo.article/{pk}/",
            ):
                response = admin_client.get(endpoint, {"since": value}, headers={"If-None-Match": tag})
                count("live.admin" if endpoint.startswith("/admin/") else "live.tag")
                assert response.status_code == 400, (kind, value, endpoint, response.status_code)
                assert response.json() == BAD_SINCE
                assert "ETag" not in response
    assert list(Article.objects.order_by("pk").values_list("pk", "title", "version")) == before


@pytest.mark.parametrize("since", ["", "2026-01-01T00:00:00"])
def test_an_empty_or_naive_since_is_ignored(admin_client: Any, since: str) -> None:
    article = Article.objects.create(title="row")
    Article.objects.filter(pk=article.pk).update(version=F("version") + 1)
    response = admin_client.get(f"/admin/demo/article/{article.pk}/version/", {"since": since})
    assert response.status_code == 200
    assert response.json()["message"] == "Someone else changed this record since you opened this page."


def test_an_extreme_but_valid_since_is_answered(admin_client: Any) -> None:
    article = Article.objects.create(title="row")
    Article.objects.filter(pk=article.pk).update(version=F("version") + 1)
    for since in ("0001-01-01T00:00:00+00:00", "0001-01-01T05:00:00+05:00", "9999-12-31T23:59:59+00:00"):
        response = admin_client.get(f"/admin/demo/article/{article.pk}/version/", {"since": since})
        assert response.status_code == 200, since
