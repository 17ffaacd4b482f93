"""A REST framework 409/412 shows the row as it is now only to a requester who may read it now.

Issue #11, item 2. Between the view's read and its write, another connection
commits a change to the row (a real second connection, in a thread). The
answer then carries the current representation only if the row is still in
the view's queryset and passes its object permissions, and only through the
view's serializer; otherwise it is what a deleted row gets (412, no version)
or what a GET would get (403).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import F
from django.urls import include, path
from rest_framework import permissions, serializers, viewsets
from rest_framework.routers import SimpleRouter
from rest_framework.test import APIClient

from concurrency.http import make_etag
from concurrency.rest_framework import VersionedSerializerMixin, VersionedViewMixin
from tests.demo.models import Article
from tests.support.races import as_other_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.http.test_rest_framework_visibility"),
]

#: What the other writer commits, set by each test.
CHANGE: dict[str, Any] = {}
SECRET = "secret body nobody may read here"


def other_writer(pk: Any) -> None:
    """Commit ``CHANGE`` to the row from another connection, and wait for it."""

    def write() -> None:
        if CHANGE.get("delete"):
            Article.objects.filter(pk=pk).delete()
        else:
            Article.objects.filter(pk=pk).update(version=F("version") + 1, **CHANGE)

    as_other_user(write)


class NotInReview(permissions.BasePermission):
    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        return obj.status != "review"


class TitleSerializer(VersionedSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Article
        fields = ["id", "title", "version"]


class RacedViewSet(VersionedViewMixin, viewsets.ModelViewSet):
    """Rows titled "Hidden…" are not in the queryset; rows in review fail the object permission."""

    queryset = Article.objects.exclude(title__startswith="Hidden")
    serializer_class = TitleSerializer
    authentication_classes: list[type] = []
    permission_classes = [NotInReview]
    require_if_match = False

    def perform_update(self, serializer: Any) -> None:
        other_writer(serializer.instance.pk)
        super().perform_update(serializer)

    def perform_destroy(self, instance: Any) -> None:
        other_writer(instance.pk)
        super().perform_destroy(instance)


router = SimpleRouter()
router.register("raced", RacedViewSet, basename="raced")
urlpatterns = [path("", include(router.urls))]


@pytest.fixture
def article() -> Article:
    CHANGE.clear()
    return Article.objects.create(title="original", body=SECRET, status="draft")


def write(article: Article, how: str) -> Any:
    client = APIClient()
    url = f"/raced/{article.pk}/"
    if how == "if-match":
        return client.patch(url, {"title": "mine"}, format="json", headers={"If-Match": make_etag(article)})
    if how == "body":
        return client.patch(url, {"title": "mine", "version": article.version}, format="json")
    return client.delete(url, headers={"If-Match": make_etag(article)})


def row(article: Article) -> Any:
    return Article.objects.filter(pk=article.pk).values_list("title", "status", "version").first()


HOW = ["if-match", "body", "delete"]


@pytest.mark.parametrize("how", HOW)
def test_a_row_still_readable_is_shown_through_the_views_serializer(article: Article, how: str) -> None:
    CHANGE.update(title="theirs")
    response = write(article, how)
    assert response.status_code == (409 if how == "body" else 412)
    problem = response.json()
    now = Article.objects.get(pk=article.pk)
    assert problem["version"] == 2 and problem["etag"] == make_etag(now)
    assert problem["current"] == {"id": article.pk, "title": "theirs", "version": 2}
    assert SECRET not in response.content.decode()
    assert row(article) == ("theirs", "draft", 2)


@pytest.mark.parametrize("how", HOW)
def test_a_row_that_left_the_queryset_answers_as_a_deleted_one(article: Article, how: str) -> None:
    CHANGE.update(title="Hidden: moved to another team")
    hidden = write(article, how)
    body = hidden.content.decode()
    assert hidden.status_code == 412
    problem = hidden.json()
    assert problem["type"].endswith(":deleted")
    assert (problem["version"], problem["etag"], problem["current"]) == (None, None, None)
    assert "Hidden" not in body and SECRET not in body and '"2-' not in body
    assert row(article) == ("Hidden: moved to another team", "draft", 2)

    # Exactly what the requester gets for a row deleted in the meantime.
    other = Article.objects.create(title="original", body=SECRET)
    CHANGE.clear()
    CHANGE.update(delete=True)
    deleted = write(other, how)
    assert (deleted.status_code, deleted.json()) == (hidden.status_code, problem)


@pytest.mark.parametrize("how", HOW)
def test_a_row_the_permissions_now_refuse_answers_what_a_get_would(article: Article, how: str) -> None:
    CHANGE.update(title="theirs", status="review")
    response = write(article, how)
    get = APIClient().get(f"/raced/{article.pk}/")
    assert get.status_code == 403
    assert (response.status_code, response.json()) == (403, get.json())
    body = response.content.decode()
    assert "theirs" not in body and SECRET not in body and "version" not in body
    assert row(article) == ("theirs", "review", 2)
