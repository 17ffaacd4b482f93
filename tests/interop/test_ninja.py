"""django-ninja through concurrency.ninja: the ETag / If-Match behaviour of concurrency.http."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models import F
from django.test import Client

from concurrency.http import PROBLEM_TYPES, make_etag
from tests.interop import api
from tests.interop.models import Ticket

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.interop.urls")]

URL = "/ninja/tickets/{}"
ASYNC_URL = "/ninja/async/tickets/{}"


@pytest.fixture
def ticket() -> Ticket:
    return Ticket.objects.create(title="Printer on fire")


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def meanwhile() -> Iterator[list[Any]]:
    """Let a test write to the row after the operation loaded it, before it saves."""
    yield api.BEFORE_SAVE
    api.BEFORE_SAVE.clear()


def row(pk: int) -> tuple[str, str, int]:
    obj = Ticket.objects.get(pk=pk)
    return obj.title, obj.status, obj.version


def put(client: Client, url: str, body: dict[str, Any], **headers: str) -> Any:
    return client.put(url, json.dumps(body), content_type="application/json", headers=headers)


def problem(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/problem+json"
    return json.loads(response.content)


@pytest.mark.parametrize("url", [URL, ASYNC_URL])
def test_get_answers_with_the_rows_etag_and_304_for_a_match(client: Client, ticket: Ticket, url: str) -> None:
    response = client.get(url.format(ticket.pk))
    assert response.status_code == 200
    assert response["ETag"] == make_etag(ticket)
    assert response.json()["version"] == 1
    again = client.get(url.format(ticket.pk), headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304
    assert again["ETag"] == response["ETag"]


@pytest.mark.parametrize("url", [URL, ASYNC_URL])
def test_put_with_the_current_etag_saves_and_returns_the_new_one(
    client: Client, ticket: Ticket, url: str
) -> None:
    etag = client.get(url.format(ticket.pk))["ETag"]
    response = put(client, url.format(ticket.pk), {"title": "Printer fixed"}, **{"If-Match": etag})
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert row(ticket.pk) == ("Printer fixed", "open", 2)
    ticket.refresh_from_db()
    assert response["ETag"] == make_etag(ticket) != etag


@pytest.mark.parametrize("url", [URL, ASYNC_URL])
def test_put_with_a_stale_etag_is_412_and_writes_nothing(client: Client, ticket: Ticket, url: str) -> None:
    etag = client.get(url.format(ticket.pk))["ETag"]
    assert put(client, url.format(ticket.pk), {"title": "first"}, **{"If-Match": etag}).status_code == 200
    response = put(client, url.format(ticket.pk), {"title": "second"}, **{"If-Match": etag})
    assert response.status_code == 412
    body = problem(response)
    assert (body["status"], body["version"], body["type"]) == (412, 2, PROBLEM_TYPES["stale"])
    assert row(ticket.pk) == ("first", "open", 2)


@pytest.mark.parametrize("url", [URL, ASYNC_URL])
def test_put_without_if_match_is_428(client: Client, ticket: Ticket, url: str) -> None:
    response = put(client, url.format(ticket.pk), {"title": "blind write"})
    assert response.status_code == 428
    assert problem(response)["type"] == PROBLEM_TYPES["required"]
    assert row(ticket.pk) == ("Printer on fire", "open", 1)


def test_malformed_if_match_is_400(client: Client, ticket: Ticket) -> None:
    response = put(client, URL.format(ticket.pk), {"title": "x"}, **{"If-Match": "garbage"})
    assert response.status_code == 400
    assert problem(response)["type"] == PROBLEM_TYPES["invalid"]
    assert row(ticket.pk) == ("Printer on fire", "open", 1)


def test_etag_of_another_row_is_412(client: Client, ticket: Ticket) -> None:
    other = Ticket.objects.create(title="other")
    response = put(client, URL.format(ticket.pk), {"title": "x"}, **{"If-Match": make_etag(other)})
    assert response.status_code == 412
    assert row(ticket.pk) == ("Printer on fire", "open", 1)


def test_write_landing_after_the_check_is_refused_by_the_update_itself(
    client: Client, ticket: Ticket, meanwhile: list[Any]
) -> None:
    etag = make_etag(ticket)
    meanwhile.append(
        lambda t: Ticket.objects.filter(pk=t.pk).update(status="closed", version=F("version") + 1)
    )
    response = client.patch(
        URL.format(ticket.pk),
        json.dumps({"title": "late"}),
        content_type="application/json",
        headers={"If-Match": etag},
    )
    assert response.status_code == 412
    assert problem(response)["version"] == 2
    assert row(ticket.pk) == ("Printer on fire", "closed", 2)


def test_delete_with_the_current_etag_deletes(client: Client, ticket: Ticket) -> None:
    response = client.delete(URL.format(ticket.pk), headers={"If-Match": make_etag(ticket)})
    assert response.status_code == 204
    assert not response.has_header("ETag")
    assert not Ticket.objects.filter(pk=ticket.pk).exists()


def test_delete_racing_a_write_is_412_and_the_row_survives(
    client: Client, ticket: Ticket, meanwhile: list[Any]
) -> None:
    meanwhile.append(lambda t: Ticket.objects.filter(pk=t.pk).update(version=F("version") + 1))
    response = client.delete(URL.format(ticket.pk), headers={"If-Match": make_etag(ticket)})
    assert response.status_code == 412
    assert Ticket.objects.filter(pk=ticket.pk).exists()


def test_delete_without_if_match_is_428(client: Client, ticket: Ticket) -> None:
    assert client.delete(URL.format(ticket.pk)).status_code == 428
    assert Ticket.objects.filter(pk=ticket.pk).exists()


def test_body_version_without_if_match_is_checked_409_when_stale(client: Client, ticket: Ticket) -> None:
    url = f"/ninja/lenient/tickets/{ticket.pk}"
    fresh = put(client, url, {"title": "one", "version": 1})
    assert fresh.status_code == 200 and fresh.json()["version"] == 2
    stale = put(client, url, {"title": "two", "version": 1})
    assert stale.status_code == 409
    assert problem(stale)["version"] == 2
    assert row(ticket.pk) == ("one", "open", 2)


def test_ninja_validation_errors_are_ninjas(client: Client, ticket: Ticket) -> None:
    response = put(client, URL.format(ticket.pk), {"status": 3}, **{"If-Match": make_etag(ticket)})
    assert response.status_code == 422
    assert row(ticket.pk) == ("Printer on fire", "open", 1)


def test_missing_row_is_404(client: Client) -> None:
    assert client.get(URL.format(999999)).status_code == 404


def test_operation_without_the_decorator_sends_no_etag(client: Client, ticket: Ticket) -> None:
    response = client.get(f"/ninja/plain/tickets/{ticket.pk}")
    assert response.status_code == 200
    assert not response.has_header("ETag")


def test_refused_write_is_412_under_debug_too(client: Client, ticket: Ticket, settings: Any) -> None:
    settings.DEBUG = True  # ninja's handler for any exception answers 500 with a traceback then
    etag = make_etag(ticket)
    Ticket.objects.filter(pk=ticket.pk).update(version=F("version") + 1)
    assert put(client, URL.format(ticket.pk), {"title": "x"}, **{"If-Match": etag}).status_code == 412


def test_decorator_above_the_route_decorator_works_too(client: Client, ticket: Ticket) -> None:
    url = f"/ninja/above/tickets/{ticket.pk}"
    etag = make_etag(ticket)
    fresh = put(client, url, {"title": "one"}, **{"If-Match": etag})
    assert fresh.status_code == 200
    assert fresh["ETag"] != etag
    assert put(client, url, {"title": "two"}, **{"If-Match": etag}).status_code == 412
    assert put(client, url, {"title": "three"}).status_code == 428
    assert row(ticket.pk) == ("one", "open", 2)
