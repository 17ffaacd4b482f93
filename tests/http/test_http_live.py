"""The precondition cycle over real HTTP (urllib) against a live server, and a two-client race."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db.models.signals import pre_save

from concurrency.http import make_etag
from tests.demo.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINTS = {"plain": "/plain/articles/{}/", "async": "/plain/async/articles/{}/", "drf": "/api/articles/{}/"}


def call(url: str, method: str = "GET", data: Any = None, **headers: str) -> tuple[int, dict[str, str], Any]:
    """Send one request; return status, headers and the decoded JSON body (or None)."""
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, head = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, head = error.code, error.read(), dict(error.headers)
    return status, head, json.loads(raw) if raw else None


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="original", body="text")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_whole_cycle_over_http(live_server: Any, article: Article, endpoint: str) -> None:
    url = live_server.url + ENDPOINTS[endpoint].format(article.pk)

    status, headers, body = call(url)
    assert status == 200 and body["version"] == 1
    first_etag = headers["ETag"]
    assert first_etag == make_etag(article)

    status, headers, body = call(url, "GET", If_None_Match=first_etag)
    assert status == 304

    status, headers, body = call(url, "PUT", {"title": "alice"}, If_Match=first_etag)
    assert status == 200 and body["version"] == 2
    second_etag = headers["ETag"]
    assert second_etag != first_etag

    # Bob still holds the first ETag: refused, nothing written.
    status, headers, body = call(url, "PUT", {"title": "bob"}, If_Match=first_etag)
    assert status == 412
    assert headers["Content-Type"] == "application/problem+json"
    assert body["status"] == 412
    if endpoint == "drf":
        assert body["current"]["title"] == "alice"
    assert Article.objects.get(pk=article.pk).title == "alice"

    # Bob re-reads and reapplies his change.
    status, headers, body = call(url)
    assert headers["ETag"] == second_etag
    status, headers, body = call(url, "PATCH", {"title": "bob"}, If_Match=headers["ETag"])
    assert status == 200 and body["version"] == 3

    status, _headers, _body = call(url, "PUT", {"title": "carol"})
    assert status == 428

    status, _headers, _body = call(url, "DELETE", If_Match=second_etag)
    assert status == 412
    status, _headers, _body = call(url, "DELETE", If_Match=make_etag(Article.objects.get(pk=article.pk)))
    assert status == 204
    assert not Article.objects.filter(pk=article.pk).exists()


@pytest.fixture
def both_past_the_check() -> Iterator[list[str]]:
    """Hold each save at pre_save until both requests got there (both passed If-Match).

    On SQLite the first writer's transaction blocks the second one before it
    reaches pre_save, so the wait times out and the writes go one after the
    other; both have still passed the If-Match check with the same version.
    """
    barrier = threading.Barrier(2, timeout=2)
    arrived: list[str] = []

    def receiver(sender: type, instance: Any, **kwargs: Any) -> None:
        arrived.append(instance.title)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    pre_save.connect(receiver, sender=Article, weak=False)
    try:
        yield arrived
    finally:
        pre_save.disconnect(receiver, sender=Article)


@pytest.mark.race
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_two_clients_race_exactly_one_put_wins(
    live_server: Any, article: Article, endpoint: str, both_past_the_check: list[str]
) -> None:
    url = live_server.url + ENDPOINTS[endpoint].format(article.pk)
    etag = make_etag(article)
    results: dict[str, tuple[int, dict[str, str], Any]] = {}

    def client(name: str) -> None:
        results[name] = call(url, "PUT", {"title": name}, If_Match=etag)

    threads = [threading.Thread(target=client, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(both_past_the_check) == ["alice", "bob"]
    statuses = sorted(status for status, _h, _b in results.values())
    assert statuses == [200, 412], results
    winner = next(name for name, (status, _h, _b) in results.items() if status == 200)
    loser = next(name for name, (status, _h, _b) in results.items() if status == 412)
    row = Article.objects.get(pk=article.pk)
    assert (row.title, row.version) == (winner, 2)
    assert results[winner][1]["ETag"] == make_etag(row)
    assert results[loser][2]["version"] == 2
    if endpoint == "drf":
        assert results[loser][2]["current"]["title"] == winner


HOSTILE_RAW = [
    b"garbage",
    b'W/"1-abc"',
    b"*, *",
    b'"' + b"9" * 3000 + b'"',
    b'"99999999999999999999999-AAAAAAAAAAAAAAAAAAAAAA"',
    '"\u00e9t\u00e9"'.encode(),
    "\u2603".encode(),
    '"\u2603"'.encode(),
    b'"a", ' * 500 + b'"b"',
    b'"\xff\xfe"',
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_hostile_raw_headers_over_http_never_500(live_server: Any, article: Article, endpoint: str) -> None:
    parts = urlsplit(live_server.url)
    path = ENDPOINTS[endpoint].format(article.pk)
    for value in HOSTILE_RAW:
        for method, header in (("PUT", b"If-Match"), ("DELETE", b"If-Match"), ("GET", b"If-None-Match")):
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            body = b'{"title": "evil"}' if method == "PUT" else b""
            connection.putrequest(method, path)
            connection.putheader(b"Content-Type", b"application/json")
            connection.putheader(b"Content-Length", str(len(body)).encode())
            connection.putheader(header, value)
            connection.endheaders(body)
            status = connection.getresponse().status
            connection.close()
            expected = (200, 400) if method == "GET" else (400, 412)
            assert status in expected, (endpoint, method, value[:40], status)
    row = Article.objects.get(pk=article.pk)
    assert (row.title, row.version) == ("original", 1)
