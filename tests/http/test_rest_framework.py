"""concurrency.rest_framework: the version in serializers, If-Match in views, problem details."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.db.models import F
from django.test import TestCase, override_settings
from rest_framework import generics, serializers
from rest_framework.test import APIClient, APIRequestFactory

from concurrency.http import make_etag
from concurrency.rest_framework import VersionConflict, VersionedSerializerMixin, VersionField
from tests.demo.api import ArticleSerializer
from tests.demo.models import Article, Counter
from tests.http.test_http import HOSTILE, concurrent_write_before_save


def url(pk: Any) -> str:
    return f"/api/articles/{pk}/"


class APITestCase(TestCase):
    def setUp(self) -> None:
        self.client = APIClient()
        self.article = Article.objects.create(title="original", body="text")

    def row(self) -> Article:
        return Article.objects.get(pk=self.article.pk)

    def assert_unchanged(self) -> None:
        row = self.row()
        assert (row.title, row.version) == ("original", 1)

    def put(self, data: dict[str, Any], **headers: str) -> Any:
        return self.client.put(url(self.article.pk), data, format="json", headers=headers)

    def patch(self, data: dict[str, Any], **headers: str) -> Any:
        return self.client.patch(url(self.article.pk), data, format="json", headers=headers)


class RetrieveTests(APITestCase):
    def test_retrieve_answers_with_the_etag_and_version(self) -> None:
        response = self.client.get(url(self.article.pk))
        assert response.status_code == 200
        assert response["ETag"] == make_etag(self.article)
        assert response.json()["version"] == 1

    def test_if_none_match_is_304(self) -> None:
        response = self.client.get(url(self.article.pk), headers={"If-None-Match": make_etag(self.article)})
        assert response.status_code == 304
        assert response["ETag"] == make_etag(self.article)

    def test_list_and_create_are_unaffected(self) -> None:
        assert self.client.get("/api/articles/").status_code == 200
        response = self.client.post("/api/articles/", {"title": "new", "version": 99}, format="json")
        assert response.status_code == 201
        created = Article.objects.get(pk=response.json()["id"])
        assert created.version == 1 == response.json()["version"]


class UpdateTests(APITestCase):
    def test_put_with_if_match_saves_and_answers_with_the_new_etag(self) -> None:
        response = self.put({"title": "mine"}, **{"If-Match": make_etag(self.article)})
        assert response.status_code == 200, response.content
        row = self.row()
        assert (row.title, row.version) == ("mine", 2)
        assert response.json()["version"] == 2
        assert response["ETag"] == make_etag(row)

    def test_patch_with_if_match_saves(self) -> None:
        response = self.patch({"body": "new"}, **{"If-Match": make_etag(self.article)})
        assert response.status_code == 200
        row = self.row()
        assert (row.title, row.body, row.version) == ("original", "new", 2)

    def test_stale_if_match_is_412_with_the_current_representation(self) -> None:
        stale = make_etag(self.article)
        Article.objects.filter(pk=self.article.pk).update(title="theirs", version=2)
        response = self.put({"title": "mine"}, **{"If-Match": stale})
        assert response.status_code == 412
        assert response["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 412
        assert problem["title"] == "Precondition Failed"
        assert problem["type"].startswith("tag:")
        assert problem["version"] == 2
        assert problem["etag"] == make_etag(self.row())
        assert problem["current"]["title"] == "theirs"
        assert problem["current"]["version"] == 2
        assert self.row().title == "theirs"

    def test_write_after_the_check_is_412_with_the_other_write(self) -> None:
        with concurrent_write_before_save(Article, self.article.pk) as fired:
            response = self.put({"title": "mine"}, **{"If-Match": make_etag(self.article)})
        assert fired
        assert response.status_code == 412
        # The other write ran inside this request's savepoint and was undone
        # with it; tests/http/test_http_live.py races real connections.
        assert response.json()["current"]["title"] != "mine"
        assert self.row().title != "mine"

    def test_missing_if_match_is_428(self) -> None:
        response = self.put({"title": "mine", "version": 1})
        assert response.status_code == 428
        assert response["Content-Type"] == "application/problem+json"
        assert "If-Match" in response.json()["detail"]
        self.assert_unchanged()

    def test_weak_etag_is_412(self) -> None:
        response = self.put({"title": "mine"}, **{"If-Match": "W/" + make_etag(self.article)})
        assert response.status_code == 412
        assert response.json()["current"]["version"] == 1
        self.assert_unchanged()

    def test_star_updates_the_current_row(self) -> None:
        response = self.put({"title": "mine"}, **{"If-Match": "*"})
        assert response.status_code == 200
        assert self.row().version == 2

    def test_body_version_disagreeing_with_if_match_is_400(self) -> None:
        response = self.put({"title": "mine", "version": 7}, **{"If-Match": make_etag(self.article)})
        assert response.status_code == 400
        assert "If-Match" in response.json()["version"][0]
        self.assert_unchanged()

    def test_hostile_headers_never_500_and_never_write(self) -> None:
        for value in HOSTILE:
            with self.subTest(value=value[:40]):
                response = self.put({"title": "mine"}, **{"If-Match": value})
                assert response.status_code in (400, 412), (value[:40], response.status_code)
                response = self.client.delete(url(self.article.pk), headers={"If-Match": value})
                assert response.status_code in (400, 412), (value[:40], response.status_code)
                response = self.client.get(url(self.article.pk), headers={"If-None-Match": value})
                assert response.status_code in (200, 400)
        self.assert_unchanged()

    def test_hostile_body_versions_are_400(self) -> None:
        etag = make_etag(self.article)
        for version in ["x", None, 2**64, -(2**64), "\u2603", [], {}, "9" * 5000]:
            with self.subTest(version=str(version)[:20]):
                response = self.put({"title": "mine", "version": version}, **{"If-Match": etag})
                assert response.status_code == 400
        self.assert_unchanged()

    def test_not_found_comes_before_preconditions(self) -> None:
        assert self.client.put(url(99999), {"title": "x"}, format="json").status_code == 404


@override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False)
class BodyVersionTests(APITestCase):
    """With If-Match optional, the version comes in the body."""

    def test_current_body_version_saves(self) -> None:
        response = self.put({"title": "mine", "version": 1})
        assert response.status_code == 200
        assert response.json()["version"] == 2
        assert response["ETag"] == make_etag(self.row())

    def test_missing_body_version_is_400_with_a_clear_message(self) -> None:
        for method in (self.put, self.patch):
            response = method({"title": "mine"})
            assert response.status_code == 400
            assert "version you read" in response.json()["version"][0]
        self.assert_unchanged()

    def test_stale_body_version_is_409_with_the_current_representation(self) -> None:
        Article.objects.filter(pk=self.article.pk).update(title="theirs", version=2)
        response = self.patch({"title": "mine", "version": 1})
        assert response.status_code == 409
        assert response["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert problem["version"] == 2
        assert problem["current"]["title"] == "theirs"
        assert "version 1" in problem["detail"]
        assert self.row().title == "theirs"

    def test_delete_still_needs_if_match(self) -> None:
        assert self.client.delete(url(self.article.pk)).status_code == 428
        assert Article.objects.filter(pk=self.article.pk).exists()


class DestroyTests(APITestCase):
    def test_delete_with_if_match_deletes(self) -> None:
        response = self.client.delete(url(self.article.pk), headers={"If-Match": make_etag(self.article)})
        assert response.status_code == 204
        assert not Article.objects.filter(pk=self.article.pk).exists()

    def test_stale_delete_is_412_and_row_survives(self) -> None:
        stale = make_etag(self.article)
        Article.objects.filter(pk=self.article.pk).update(version=2)
        response = self.client.delete(url(self.article.pk), headers={"If-Match": stale})
        assert response.status_code == 412
        assert response.json()["current"]["version"] == 2
        assert Article.objects.filter(pk=self.article.pk).exists()

    def test_delete_refused_at_write_time_is_412(self) -> None:
        original_delete = Article.delete

        def delete_after_someone_else_saved(instance: Article, *args: Any, **kwargs: Any) -> Any:
            Article.objects.filter(pk=instance.pk).update(title="theirs", version=F("version") + 1)
            return original_delete(instance, *args, **kwargs)

        Article.delete = delete_after_someone_else_saved  # type: ignore[method-assign]
        try:
            response = self.client.delete(url(self.article.pk), headers={"If-Match": make_etag(self.article)})
        finally:
            Article.delete = original_delete  # type: ignore[method-assign]
        assert response.status_code == 412
        assert Article.objects.filter(pk=self.article.pk).exists()

    def test_missing_if_match_is_428(self) -> None:
        assert self.client.delete(url(self.article.pk)).status_code == 428
        assert Article.objects.filter(pk=self.article.pk).exists()


class SerializerTests(TestCase):
    """The serializer mixin on its own, and under a plain DRF view."""

    def test_update_without_version_is_invalid(self) -> None:
        article = Article.objects.create(title="a")
        serializer = ArticleSerializer(article, data={"title": "b"})
        assert not serializer.is_valid()
        assert "version" in serializer.errors

    def test_stale_version_raises_version_conflict_and_row_keeps_first_write(self) -> None:
        article = Article.objects.create(title="a")
        Article.objects.filter(pk=article.pk).update(title="first", version=2)
        serializer = ArticleSerializer(article, data={"title": "second", "version": 1})
        assert serializer.is_valid(), serializer.errors
        with pytest.raises(VersionConflict) as info, transaction.atomic():
            serializer.save()
        assert info.value.error.db_version == 2
        assert info.value.detail["version"] == 2
        assert Article.objects.get(pk=article.pk).title == "first"

    def test_version_field_is_added_when_not_listed(self) -> None:
        class CounterSerializer(VersionedSerializerMixin, serializers.ModelSerializer):
            class Meta:
                model = Counter
                fields = ["name", "value"]

        counter = Counter.objects.create(name="c")
        fields = CounterSerializer(counter).fields
        assert isinstance(fields["version"], VersionField)
        assert CounterSerializer(counter).data["version"] == 1

    def test_plain_drf_update_view_answers_409(self) -> None:
        article = Article.objects.create(title="a")
        Article.objects.filter(pk=article.pk).update(version=5)
        view = generics.UpdateAPIView.as_view(
            queryset=Article.objects.all(),
            serializer_class=ArticleSerializer,
            authentication_classes=[],
            permission_classes=[],
        )
        request = APIRequestFactory().put("/", {"title": "b", "version": 1}, format="json")
        response = view(request, pk=article.pk)
        assert response.status_code == 409
        assert response.data["version"] == 5
