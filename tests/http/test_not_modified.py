"""A matching If-None-Match answers 304: no body, no Content-Type, the 200's validator and caching headers."""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.utils.http import http_date
from rest_framework import permissions, viewsets
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from concurrency.http import apply_preconditions, make_etag, preconditions
from concurrency.rest_framework import VersionedViewMixin
from tests.demo.api import ArticleSerializer
from tests.demo.models import Article

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.http.test_not_modified")]

LAST_MODIFIED = http_date(1_700_000_000)
EXPIRES = http_date(1_900_000_000)
CACHING = {
    "Cache-Control": "private, max-age=60",
    "Last-Modified": LAST_MODIFIED,
    "Expires": EXPIRES,
    "Content-Location": "/canonical/",
}


def _cached(response: HttpResponse) -> HttpResponse:
    for name, value in CACHING.items():
        response[name] = value
    response["Vary"] = "Accept-Language"
    response["X-Not-A-Cache-Header"] = "dropped"
    response.set_cookie("seen", "yes")
    return response


@preconditions
def cached_article(request: HttpRequest, pk: int) -> HttpResponse:
    article = apply_preconditions(request, Article.objects.get(pk=pk))
    return _cached(JsonResponse({"title": article.title, "version": article.version}))


class CachedViewSet(VersionedViewMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Article.objects.all()
    serializer_class = ArticleSerializer
    authentication_classes: list[type] = []
    permission_classes = [permissions.AllowAny]

    def retrieve(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = super().retrieve(request, *args, **kwargs)
        return _cached(response)  # type: ignore[return-value]


router = SimpleRouter()
router.register("drf", CachedViewSet, basename="cached")

urlpatterns = [
    path("plain/<int:pk>/", cached_article),
    path("", include(router.urls)),
]

URLS = {"plain": "/plain/{}/", "drf": "/drf/{}/"}


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="original", body="text")


@pytest.mark.parametrize("kind", URLS)
@pytest.mark.parametrize("method", ["get", "head"])
def test_304_has_no_body_no_content_type_and_the_200s_caching_headers(
    client: Any, article: Article, kind: str, method: str
) -> None:
    url = URLS[kind].format(article.pk)
    full = getattr(client, method)(url)
    assert full.status_code == 200
    etag = full["ETag"]
    assert etag == make_etag(article)

    response = getattr(client, method)(url, headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.content == b""
    assert not response.has_header("Content-Type")
    assert response["ETag"] == etag
    for name, value in CACHING.items():
        assert response[name] == value, name
    assert response["Vary"] == full["Vary"]
    assert "Accept-Language" in response["Vary"]
    assert not response.has_header("X-Not-A-Cache-Header")
    assert response.cookies["seen"].value == "yes"
    # A Content-Length in a 304 is the 200's (RFC 9110 §8.6), never a "0".
    assert response["Content-Length"] == str(len(client.get(url).content))


@pytest.mark.parametrize("kind", URLS)
def test_a_stale_if_none_match_gets_the_full_200(client: Any, article: Article, kind: str) -> None:
    url = URLS[kind].format(article.pk)
    stale = '"0-' + "A" * 22 + '"'
    response = client.get(url, headers={"If-None-Match": stale})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["title"] == "original"


@pytest.mark.parametrize("kind", URLS)
def test_304_over_a_real_http_server(live_server: Any, article: Article, kind: str) -> None:
    """What a client on the wire gets: the status line, the headers, and not one byte of body."""
    parts = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        path_ = URLS[kind].format(article.pk)
        connection.request("GET", path_, headers={"If-None-Match": make_etag(article)})
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    assert response.status == 304
    assert body == b""
    assert "content-type" not in headers
    assert headers["etag"] == make_etag(article)
    assert headers["cache-control"] == CACHING["Cache-Control"]
    assert headers["last-modified"] == LAST_MODIFIED
    assert headers.get("content-length", "") != "0"
