"""Versions whose successor overflows the column, and a row at the largest version.

From the reliability issue (#10): each sequence ends by asserting the outcome (the exception,
the version the instance holds, the row as stored); "another user" is a thread with a connection
of its own that commits its write.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from concurrency.exceptions import RecordModifiedError
from concurrency.forms import ConcurrentForm
from concurrency.http.etags import mac as _mac
from concurrency.signing import sign_version
from tests.demo.models import Article, ConditionalArticle, Counter, Note
from tests.support.races import stored

pytestmark = pytest.mark.django_db(transaction=True)

BIGINT_MAX = 2**63 - 1


# --- 11. Versions whose successor overflows the column ---------------------------

OVERFLOWING = [BIGINT_MAX, 2**63, 2**64, 10**30, -(2**63) - 1]


class TestOverflowingVersion:
    @pytest.mark.parametrize("version", OVERFLOWING)
    @pytest.mark.parametrize("model", [Counter, ConditionalArticle, Note])
    def test_model_save_and_delete_are_refused(self, model: type, version: int) -> None:
        fields = {Counter: {"name": "c"}, ConditionalArticle: {"title": "t"}, Note: {"title": "t"}}[model]
        pk = model.objects.create(**fields).pk
        before = stored(model, pk)
        instance = model.objects.get(pk=pk)
        instance.version = version
        with pytest.raises(RecordModifiedError):
            instance.save()
        assert stored(model, pk) == before
        with pytest.raises(RecordModifiedError):
            instance.delete()
        assert stored(model, pk) == before

    def test_concurrent_form_answers_with_a_form_error(self) -> None:
        class ArticleForm(ConcurrentForm):
            class Meta:
                model = Article
                fields = ["title", "body", "status", "version"]

        row = Article.objects.create(title="row", status="draft")
        for version in (BIGINT_MAX, 2**63):
            data = {
                "title": "overwritten",
                "body": "",
                "status": "draft",
                "version": sign_version(Article, row.pk, version),
            }
            form = ArticleForm(data, instance=Article.objects.get(pk=row.pk))
            assert not form.is_valid(), version
            assert form.non_field_errors() or form.errors.get("version")
            assert stored(Article, row.pk, "title") == ("row", 1)

    @pytest.mark.parametrize("method", ["put", "patch"])
    @override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False)  # the version comes in the body
    def test_rest_framework_body_version_is_a_conflict_not_a_500(self, method: str) -> None:
        row = Article.objects.create(title="row", status="draft")
        client = APIClient()
        for version in (BIGINT_MAX, 2**63):
            response = getattr(client, method)(
                f"/api/articles/{row.pk}/", {"title": "overwritten", "version": version}, format="json"
            )
            assert response.status_code in (400, 409, 412), (version, response.status_code)
            assert stored(Article, row.pk, "title") == ("row", 1)

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_rest_framework_if_match_is_412_or_400(self, method: str) -> None:
        row = Article.objects.create(title="row", status="draft")
        client = APIClient()
        for version in (BIGINT_MAX, 2**63):
            etag = f'"{version}-{_mac(Article, row.pk, version)}"'
            response = getattr(client, method)(
                f"/api/articles/{row.pk}/",
                {"title": "overwritten"},
                format="json",
                headers={"If-Match": etag},
            )
            assert response.status_code in (400, 412), (version, response.status_code)
            assert stored(Article, row.pk, "title") == ("row", 1)

    @pytest.mark.parametrize(
        "url", ["/plain/articles/{}/", "/plain/async/articles/{}/", "/plain/cbv/articles/{}/"]
    )
    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_plain_view_if_match_is_412_or_400(self, client: Any, url: str, method: str) -> None:
        row = Article.objects.create(title="row", status="draft")
        for version in (BIGINT_MAX, 2**63):
            etag = f'"{version}-{_mac(Article, row.pk, version)}"'
            response = getattr(client, method)(
                url.format(row.pk),
                '{"title": "overwritten"}',
                content_type="application/json",
                headers={"If-Match": etag},
            )
            assert response.status_code in (400, 412), (version, response.status_code)
            assert stored(Article, row.pk, "title") == ("row", 1)


class TestRowAtTheLargestVersion:
    """The row itself holds 2**63 - 1: the version a client sends is current, but has no successor."""

    def _row(self) -> Article:
        row = Article.objects.create(title="row", status="draft")
        Article.objects.filter(pk=row.pk).update(version=BIGINT_MAX)
        return Article.objects.get(pk=row.pk)

    def test_model_save_is_refused_and_the_row_kept(self) -> None:
        row = self._row()
        row.title = "mine"
        with pytest.raises(RecordModifiedError):
            row.save()
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)
        assert row.version == BIGINT_MAX

    def test_concurrent_form_never_writes(self) -> None:
        class ArticleForm(ConcurrentForm):
            class Meta:
                model = Article
                fields = ["title", "body", "status", "version"]

        row = self._row()
        data = {
            "title": "mine",
            "body": "",
            "status": "draft",
            "version": sign_version(Article, row.pk, BIGINT_MAX),
        }
        form = ArticleForm(data, instance=row)
        if form.is_valid():
            with pytest.raises(RecordModifiedError):
                form.save()
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)

    @override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False)
    def test_rest_framework_body_version_is_a_4xx(self) -> None:
        row = self._row()
        response = APIClient().put(
            f"/api/articles/{row.pk}/", {"title": "mine", "version": BIGINT_MAX}, format="json"
        )
        assert response.status_code in (400, 409, 412), response.status_code
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)

    def test_rest_framework_if_match_is_a_4xx(self) -> None:
        row = self._row()
        etag = f'"{BIGINT_MAX}-{_mac(Article, row.pk, BIGINT_MAX)}"'
        response = APIClient().put(
            f"/api/articles/{row.pk}/", {"title": "mine"}, format="json", headers={"If-Match": etag}
        )
        assert response.status_code in (400, 409, 412), response.status_code
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)

    @pytest.mark.parametrize(
        "url", ["/plain/articles/{}/", "/plain/async/articles/{}/", "/plain/cbv/articles/{}/"]
    )
    def test_plain_view_if_match_is_a_4xx(self, client: Any, url: str) -> None:
        row = self._row()
        etag = f'"{BIGINT_MAX}-{_mac(Article, row.pk, BIGINT_MAX)}"'
        response = client.put(
            url.format(row.pk),
            '{"title": "mine"}',
            content_type="application/json",
            headers={"If-Match": etag},
        )
        assert response.status_code in (400, 409, 412), response.status_code
        assert stored(Article, row.pk, "title") == ("row", BIGINT_MAX)
