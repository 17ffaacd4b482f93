"""concurrency.http: ETags, If-Match bound to the conditional write, 412/428/304."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.db.models.signals import pre_save
from django.http import JsonResponse
from django.test import AsyncRequestFactory, RequestFactory, TestCase, override_settings
from django.views import View

from concurrency.http import (
    InvalidPrecondition,
    PreconditionMixin,
    apply_preconditions,
    make_etag,
    preconditions,
    version_from_etag,
)
from concurrency.http.preconditions import parse_entity_tags as _parse_entity_tags
from tests.demo.models import Article, Counter, ProxyArticle, SimpleConcurrentModel, UUIDPk

URLS = {
    "function": "/plain/articles/{}/",
    "async": "/plain/async/articles/{}/",
    "class": "/plain/cbv/articles/{}/",
}

HOSTILE = [
    '"1-' + "A" * 22 + '", "2-' + "B" * 22 + '", W/"3-' + "C" * 22 + '"',
    "garbage",
    '"unterminated',
    'W/"1-abc"',
    "W/",
    '"1-abc" "2-def"',
    '"a",,, "b", *',
    "*, *",
    '""',
    "",
    "   ",
    ",",
    '"' + "9" * 5000 + "-" + "A" * 22 + '"',
    '"99999999999999999999-' + "A" * 22 + '"',
    '"-1-' + "A" * 22 + '"',
    '"\u00e9t\u00e9-tag"',
    "\u2603",
    '"\u2603"',
    '"1-' + "A" * 22 + '"' + ", x" * 3000,
    "\x00",
    '"' + '1-abc",' * 2000 + '"',
]


class ETagTests(TestCase):
    def test_etag_is_strong_quoted_and_round_trips_to_the_version(self) -> None:
        article = Article.objects.create(title="a")
        etag = make_etag(article)
        assert etag.startswith('"1-') and etag.endswith('"') and not etag.startswith("W/")
        assert version_from_etag(Article, article.pk, etag) == 1
        assert version_from_etag(Article, article.pk, etag[1:-1]) == 1

    def test_etag_of_one_row_names_no_version_of_another(self) -> None:
        first = Article.objects.create(title="a")
        second = Article.objects.create(title="b")
        assert first.version == second.version
        assert make_etag(first) != make_etag(second)
        assert version_from_etag(Article, second.pk, make_etag(first)) is None
        assert version_from_etag(Counter, first.pk, make_etag(first)) is None

    def test_proxy_shares_the_concrete_models_tags(self) -> None:
        article = Article.objects.create(title="a")
        proxy = ProxyArticle.objects.get(pk=article.pk)
        assert make_etag(proxy) == make_etag(article)

    def test_tampered_weak_and_malformed_tags_name_no_version(self) -> None:
        article = Article.objects.create(title="a")
        etag = make_etag(article)
        forged = etag.replace('"1-', '"2-')
        for value in (forged, "W/" + etag, '"1"', "", '""', "1-", etag[:-3] + '"'):
            assert version_from_etag(Article, article.pk, value) is None, value

    def test_parse_lists_star_and_weak(self) -> None:
        assert _parse_entity_tags("*") is None
        assert _parse_entity_tags(' "a" ,W/"b",, "c,d"') == [(False, "a"), (True, "b"), (False, "c,d")]

    def test_parse_refuses_what_is_not_the_rfc_grammar(self) -> None:
        for value in ("", "a", '"a" "b"', '"a", *', '"a', "W/", "\u2603", '"\u2603"', "x" * 9000):
            with pytest.raises(InvalidPrecondition):
                _parse_entity_tags(value)


class ViewTests(TestCase):
    """Every case on the function view, the async view and the class-based view."""

    def setUp(self) -> None:
        self.article = Article.objects.create(title="original", body="text")

    def url(self, kind: str, pk: int | None = None) -> str:
        return URLS[kind].format(pk or self.article.pk)

    def put(self, kind: str, data: dict[str, Any], **headers: str) -> Any:
        return self.client.put(
            self.url(kind), json.dumps(data), content_type="application/json", headers=headers
        )

    def assert_unchanged(self) -> None:
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("original", 1)

    def test_get_and_head_answer_with_the_etag(self) -> None:
        for kind in URLS:
            with self.subTest(kind):
                response = self.client.get(self.url(kind))
                assert response.status_code == 200
                assert response["ETag"] == make_etag(self.article)
                assert response.json()["version"] == 1
                assert self.client.head(self.url(kind))["ETag"] == make_etag(self.article)

    def test_if_none_match_with_current_etag_is_304(self) -> None:
        etag = make_etag(self.article)
        for kind in URLS:
            with self.subTest(kind):
                response = self.client.get(self.url(kind), headers={"If-None-Match": etag})
                assert response.status_code == 304
                assert response["ETag"] == etag
                assert (
                    self.client.get(self.url(kind), headers={"If-None-Match": "W/" + etag}).status_code == 304
                )
                stale = '"0-' + "A" * 22 + '"'
                assert self.client.get(self.url(kind), headers={"If-None-Match": stale}).status_code == 200

    def test_put_with_current_etag_saves_and_answers_with_the_new_etag(self) -> None:
        for kind in URLS:
            with self.subTest(kind):
                current = Article.objects.get(pk=self.article.pk)
                response = self.put(kind, {"title": kind}, **{"If-Match": make_etag(current)})
                assert response.status_code == 200, response.content
                row = Article.objects.get(pk=self.article.pk)
                assert (row.title, row.version) == (kind, current.version + 1)
                assert response["ETag"] == make_etag(row) != make_etag(current)
                assert response.json()["version"] == row.version

    def test_put_with_stale_etag_is_412_and_row_is_unchanged(self) -> None:
        stale = make_etag(self.article)
        Article.objects.filter(pk=self.article.pk).update(title="theirs", version=2)
        for kind in URLS:
            with self.subTest(kind):
                response = self.put(kind, {"title": "mine"}, **{"If-Match": stale})
                assert response.status_code == 412
                assert response["Content-Type"] == "application/problem+json"
                problem = response.json()
                assert problem["status"] == 412 and problem["version"] == 2
                assert "version 1" in problem["detail"] and "version 2" in problem["detail"]
                row = Article.objects.get(pk=self.article.pk)
                assert (row.title, row.version) == ("theirs", 2)

    def test_put_without_if_match_is_428(self) -> None:
        for kind in URLS:
            with self.subTest(kind):
                response = self.put(kind, {"title": "mine"})
                assert response.status_code == 428
                assert "If-Match" in response.json()["detail"]
                self.assert_unchanged()

    @override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False)
    def test_if_match_can_be_optional_by_setting(self) -> None:
        response = self.put("function", {"title": "mine"})
        assert response.status_code == 200
        assert Article.objects.get(pk=self.article.pk).version == 2

    def test_weak_etag_never_matches_if_match(self) -> None:
        for kind in URLS:
            with self.subTest(kind):
                response = self.put(kind, {"title": "mine"}, **{"If-Match": "W/" + make_etag(self.article)})
                assert response.status_code == 412
                self.assert_unchanged()

    def test_etag_of_another_row_at_the_same_version_is_412(self) -> None:
        other = Article.objects.create(title="other")
        for kind in URLS:
            with self.subTest(kind):
                response = self.put(kind, {"title": "mine"}, **{"If-Match": make_etag(other)})
                assert response.status_code == 412
                self.assert_unchanged()

    def test_list_matches_when_one_strong_tag_is_current(self) -> None:
        stale = '"0-' + "A" * 22 + '"'
        header = f"{stale}, W/{make_etag(self.article)}, {make_etag(self.article)}"
        response = self.put("function", {"title": "mine"}, **{"If-Match": header})
        assert response.status_code == 200
        assert Article.objects.get(pk=self.article.pk).title == "mine"

    def test_star_matches_an_existing_row(self) -> None:
        response = self.put("class", {"title": "mine"}, **{"If-Match": "*"})
        assert response.status_code == 200
        assert Article.objects.get(pk=self.article.pk).version == 2

    def test_malformed_if_match_is_400(self) -> None:
        for kind in URLS:
            with self.subTest(kind):
                response = self.put(kind, {"title": "mine"}, **{"If-Match": "not-an-etag"})
                assert response.status_code == 400
                assert response["Content-Type"] == "application/problem+json"
                self.assert_unchanged()

    def test_hostile_headers_are_400_or_412_and_never_write(self) -> None:
        for kind in URLS:
            for value in HOSTILE:
                with self.subTest(kind=kind, value=value[:40]):
                    response = self.put(kind, {"title": "mine"}, **{"If-Match": value})
                    assert response.status_code in (400, 412), (value[:40], response.status_code)
                    response = self.client.get(self.url(kind), headers={"If-None-Match": value})
                    assert response.status_code in (200, 400), (value[:40], response.status_code)
        self.assert_unchanged()

    def test_delete_with_current_etag_deletes(self) -> None:
        for kind in URLS:
            with self.subTest(kind):
                article = Article.objects.create(title=kind)
                response = self.client.delete(
                    self.url(kind, article.pk), headers={"If-Match": make_etag(article)}
                )
                assert response.status_code == 204
                assert not response.has_header("ETag")
                assert not Article.objects.filter(pk=article.pk).exists()

    def test_stale_or_missing_if_match_on_delete_keeps_the_row(self) -> None:
        stale = make_etag(self.article)
        for kind in URLS:
            with self.subTest(kind):
                assert self.client.delete(self.url(kind)).status_code == 428
        Article.objects.filter(pk=self.article.pk).update(version=2)
        for kind in URLS:
            with self.subTest(kind):
                assert self.client.delete(self.url(kind), headers={"If-Match": stale}).status_code == 412
        assert Article.objects.filter(pk=self.article.pk).exists()

    def test_invalid_body_is_400_and_precondition_comes_first(self) -> None:
        etag = make_etag(self.article)
        response = self.put("function", {"status": "nonsense", "title": "x"}, **{"If-Match": etag})
        assert response.status_code == 400
        assert "status" in response.json()
        self.assert_unchanged()


@contextmanager
def concurrent_write_before_save(model: type, pk: Any) -> Iterator[list[int]]:
    """Bump the row once, right before the request's own save: a writer that won the race."""
    fired: list[int] = []

    def receiver(sender: type, instance: Any, **kwargs: Any) -> None:
        if not fired and instance.pk == pk:
            fired.append(1)
            model.objects.filter(pk=pk).update(title="theirs", version=F("version") + 1)

    pre_save.connect(receiver, sender=model, weak=False)
    try:
        yield fired
    finally:
        pre_save.disconnect(receiver, sender=model)


class WriteTimeTests(TestCase):
    """A change that lands after the If-Match check is refused by the UPDATE itself.

    The "other writer" runs inside the request's savepoint here, so it is undone
    with it; tests/http/test_http_live.py races real connections.
    """

    def test_write_after_the_check_is_refused_with_412(self) -> None:
        for kind in URLS:
            with self.subTest(kind):
                article = Article.objects.create(title="original")
                with concurrent_write_before_save(Article, article.pk) as fired:
                    response = self.client.put(
                        URLS[kind].format(article.pk),
                        json.dumps({"title": "mine"}),
                        content_type="application/json",
                        headers={"If-Match": make_etag(article)},
                    )
                assert fired
                assert response.status_code == 412
                # The refusal saw the other write; the savepoint then undid it.
                assert response.json()["version"] == 2
                assert Article.objects.get(pk=article.pk).title != "mine"

    @override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False)
    def test_write_after_the_load_without_if_match_is_409(self) -> None:
        article = Article.objects.create(title="original")
        with concurrent_write_before_save(Article, article.pk):
            response = self.client.put(
                URLS["function"].format(article.pk),
                json.dumps({"title": "mine"}),
                content_type="application/json",
            )
        assert response.status_code == 409
        assert response.json()["version"] == 2
        assert Article.objects.get(pk=article.pk).title != "mine"

    def test_star_write_after_the_load_is_409(self) -> None:
        article = Article.objects.create(title="original")
        with concurrent_write_before_save(Article, article.pk):
            response = self.client.put(
                URLS["function"].format(article.pk),
                json.dumps({"title": "mine"}),
                content_type="application/json",
                headers={"If-Match": "*"},
            )
        assert response.status_code == 409
        assert response.json()["version"] == 2
        assert Article.objects.get(pk=article.pk).title != "mine"

    def test_row_deleted_after_the_check_is_412(self) -> None:
        article = Article.objects.create(title="original")

        def receiver(sender: type, instance: Any, **kwargs: Any) -> None:
            Article.objects.filter(pk=instance.pk).delete()

        pre_save.connect(receiver, sender=Article, weak=False)
        try:
            response = self.client.put(
                URLS["class"].format(article.pk),
                json.dumps({"title": "mine"}),
                content_type="application/json",
                headers={"If-Match": make_etag(article)},
            )
        finally:
            pre_save.disconnect(receiver, sender=Article)
        assert response.status_code == 412
        assert "deleted" in response.json()["detail"]

    def test_stale_delete_after_the_check_is_412_and_row_survives(self) -> None:
        article = Article.objects.create(title="original")
        original_delete = Article.delete

        def delete_after_someone_else_saved(self: Article, *args: Any, **kwargs: Any) -> Any:
            Article.objects.filter(pk=self.pk).update(version=F("version") + 1)
            return original_delete(self, *args, **kwargs)

        Article.delete = delete_after_someone_else_saved  # type: ignore[method-assign]
        try:
            response = self.client.delete(
                URLS["function"].format(article.pk), headers={"If-Match": make_etag(article)}
            )
        finally:
            Article.delete = original_delete  # type: ignore[method-assign]
        assert response.status_code == 412
        assert response.json()["version"] == 2
        assert Article.objects.filter(pk=article.pk).exists()


class DecoratorTests(TestCase):
    def test_decorator_options_per_view(self) -> None:
        article = Article.objects.create(title="a")

        @preconditions(require_if_match=False, write_methods=["POST"])
        def view(request: Any) -> Any:
            from django.http import HttpResponse

            obj = apply_preconditions(request, Article.objects.get(pk=article.pk))
            obj.save()
            return HttpResponse("ok")

        factory = RequestFactory()
        assert view(factory.post("/")).status_code == 200
        with override_settings(CONCURRENCY_REQUIRE_IF_MATCH=False):
            assert view(factory.put("/", headers={"If-Match": '"1-x"'})).status_code == 412

    def test_apply_without_the_decorator_is_a_configuration_error(self) -> None:
        article = Article.objects.create(title="a")
        with pytest.raises(ImproperlyConfigured):
            apply_preconditions(RequestFactory().get("/"), article)


class AsyncArticleView(PreconditionMixin, View):
    """An async class-based view: it loads the row itself and applies the preconditions."""

    http_method_names = ["get", "put"]

    async def get(self, request: Any, pk: int) -> JsonResponse:
        article = apply_preconditions(request, await Article.objects.aget(pk=pk))
        return JsonResponse({"version": article.version})

    async def put(self, request: Any, pk: int) -> JsonResponse:
        article = apply_preconditions(request, await Article.objects.aget(pk=pk))
        article.title = json.loads(request.body)["title"]
        await article.asave()
        return JsonResponse({"version": article.version})


class AsyncClassViewTests(TestCase):
    async def test_async_class_based_view_binds_if_match(self) -> None:
        article = await Article.objects.acreate(title="a")
        view = AsyncArticleView.as_view()
        factory = AsyncRequestFactory()
        body = json.dumps({"title": "b"})

        response = await view(factory.get("/"), pk=article.pk)
        assert response["ETag"] == make_etag(article)
        response = await view(
            factory.put("/", body, content_type="application/json", headers={"If-Match": make_etag(article)}),
            pk=article.pk,
        )
        assert response.status_code == 200
        row = await Article.objects.aget(pk=article.pk)
        assert (row.title, row.version) == ("b", 2)
        assert response["ETag"] == make_etag(row)
        stale = await view(
            factory.put("/", body, content_type="application/json", headers={"If-Match": make_etag(article)}),
            pk=article.pk,
        )
        assert stale.status_code == 412
        missing = await view(factory.put("/", body, content_type="application/json"), pk=article.pk)
        assert missing.status_code == 428
        assert (await Article.objects.aget(pk=article.pk)).version == 2


class CombinedHeaderTests(TestCase):
    def test_if_none_match_is_evaluated_after_a_true_if_match(self) -> None:
        article = Article.objects.create(title="a")
        etag = make_etag(article)
        response = self.client.get(
            URLS["function"].format(article.pk), headers={"If-Match": etag, "If-None-Match": etag}
        )
        assert response.status_code == 304
        response = self.client.put(
            URLS["function"].format(article.pk),
            json.dumps({"title": "b"}),
            content_type="application/json",
            headers={"If-Match": etag, "If-None-Match": "*"},
        )
        assert response.status_code == 412
        assert Article.objects.get(pk=article.pk).version == 1


class OtherKeysAndVersionsTests(TestCase):
    def test_uuid_pk_and_microsecond_versions_round_trip(self) -> None:
        row = UUIDPk.objects.create(name="u")
        assert version_from_etag(UUIDPk, row.pk, make_etag(row)) == 1
        timed = SimpleConcurrentModel.objects.create(username="t")
        assert timed.version > 10**15
        assert version_from_etag(SimpleConcurrentModel, timed.pk, make_etag(timed)) == timed.version
        assert version_from_etag(SimpleConcurrentModel, timed.pk + 1, make_etag(timed)) is None
