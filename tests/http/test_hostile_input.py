"""Hostile versions fed to the HTTP entry points: If-Match on plain Django views, and the
version in the body or If-Match of the REST framework API.

Every value of the catalogue in tests/support/hostile.py, as a header (bare, quoted,
weak, as a forged or replayed entity tag) or as a JSON body value, must be
answered with a 4xx, never a 2xx or a 500, and the database must be exactly as
it was. Each attempt is counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from concurrency.http import make_etag
from concurrency.http.etags import mac as _mac
from tests.demo.models import Article, SimpleConcurrentModel
from tests.support.hostile import MISSING, count, raw_values, report, signed_values, snapshot

pytestmark = [pytest.mark.hostile, pytest.mark.django_db]

PLAIN_URLS = ["/plain/articles/{}/", "/plain/async/articles/{}/", "/plain/cbv/articles/{}/"]


@pytest.fixture
def rows() -> tuple[Article, Article, SimpleConcurrentModel]:
    row = Article.objects.create(title="row", status="draft")
    row.save()  # version 2: not the initial one
    other = Article.objects.create(title="other", status="draft")
    foreign = SimpleConcurrentModel.objects.create(pk=row.pk, username="foreign")
    return row, other, foreign


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print("\n" + report("http."))


def if_match_values(
    row: Article, other: Article, foreign: SimpleConcurrentModel
) -> Iterator[tuple[str, Any]]:
    """Yield hostile If-Match values for ``row`` (``MISSING``: no header at all)."""
    genuine = make_etag(row)[1:-1]
    version, _, mac = genuine.partition("-")
    for kind, value in [*raw_values(), *signed_values(row, other, foreign)]:
        if value is MISSING or value is None:
            yield kind, MISSING
            continue
        yield kind, str(value)
        yield f"{kind}, quoted", f'"{value}"'
    yield "weak", f'W/"{genuine}"'
    yield "unquoted genuine", genuine
    yield "stale", f'"{int(version) - 1}-{_mac(Article, row.pk, int(version) - 1)}"'
    yield "tampered", f'"{int(version) + 1}-{mac}"'
    yield "tampered", f'"{version}-{mac[:-1]}"'
    yield "tampered", f'"{version}-{mac[:-1]}{"A" if mac[-1] != "A" else "B"}"'
    yield "tampered", f'"{version}-{mac}{mac}"'
    yield "tampered", f'"{"9" * 30}-{mac}"'
    yield "replayed", make_etag(other)
    yield "replayed", f'"{version}-{_mac(Article, other.pk, int(version))}"'
    yield "replayed", make_etag(foreign)
    yield "replayed", f'"{version}-{_mac(SimpleConcurrentModel, row.pk, int(version))}"'
    yield "replayed", f"{make_etag(other)}, {make_etag(foreign)}"
    yield "malformed list", f'"{genuine}" "{genuine}"'
    yield "malformed list", f'"{genuine}",,,x'
    yield "huge", '"' + "1" * 10_000 + '"'
    yield "huge", ", ".join([make_etag(other)] * 2_000)


def test_plain_views_answer_every_hostile_if_match_with_a_4xx(client: Any, rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    before = snapshot()
    tried = 0
    body = json.dumps({"title": "overwritten"})
    for kind, value in if_match_values(row, other, foreign):
        headers = {} if value is MISSING else {"If-Match": value}
        # PUT on the function, async and class-based views; PATCH and DELETE on the first.
        calls = [("put", t) for t in PLAIN_URLS] + [("patch", PLAIN_URLS[0]), ("delete", PLAIN_URLS[0])]
        for method, template in calls:
            url = template.format(row.pk)
            response = getattr(client, method)(url, body, content_type="application/json", headers=headers)
            assert 400 <= response.status_code < 500, (
                f"{method} {url} {kind} {value!r}: {response.status_code}"
            )
            assert snapshot() == before, f"{method} {url} {kind} {value!r} changed the database"
            tried += 1
            count(f"http.plain {method.upper()}")
    assert tried >= 800


def _json_values(row: Article, other: Article, foreign: SimpleConcurrentModel) -> Iterator[tuple[str, Any]]:
    """Yield hostile version values for a JSON body (``MISSING``: no version key)."""
    for kind, value in [*raw_values(), *signed_values(row, other, foreign)]:
        yield kind, value
    for value in (
        2**63,
        2**64,
        10**100,
        -1,
        -(2**63) - 1,
        1.5,
        float(row.version),
        True,
        False,
        [],
        {},
        [row.version],
    ):
        yield "json", value
    yield "stale", row.version - 1
    yield "replayed", other.version
    yield "replayed", foreign.version


def test_rest_framework_answers_every_hostile_body_version_with_a_4xx(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    client = APIClient()
    url = f"/api/articles/{row.pk}/"
    before = snapshot()
    tried = 0
    for kind, value in _json_values(row, other, foreign):
        data: dict[str, Any] = {"title": "overwritten"}
        if value is not MISSING:
            data["version"] = value
        for method in ("put", "patch"):
            response = getattr(client, method)(url, data, format="json")
            assert 400 <= response.status_code < 500, f"{method} {kind} {value!r}: {response.status_code}"
            assert snapshot() == before, f"{method} {kind} {value!r} changed the database"
            tried += 1
            count(f"http.DRF {method.upper()} body")
    assert tried >= 150


def test_rest_framework_answers_every_hostile_if_match_with_a_4xx(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    client = APIClient()
    url = f"/api/articles/{row.pk}/"
    before = snapshot()
    tried = 0
    for kind, value in if_match_values(row, other, foreign):
        if value is MISSING:
            continue  # without If-Match the body must carry the version: covered above
        for method in ("put", "patch", "delete"):
            response = getattr(client, method)(
                url, {"title": "overwritten"}, format="json", headers={"If-Match": value}
            )
            assert 400 <= response.status_code < 500, f"{method} {kind} {value!r}: {response.status_code}"
            assert snapshot() == before, f"{method} {kind} {value!r} changed the database"
            tried += 1
            count(f"http.DRF {method.upper()} If-Match")
    assert tried >= 200
