"""A malformed resolution POST is a 400 page, never a 500, and saves nothing (issue #11, item 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from concurrency.resolution import (
    BASE_FIELD,
    CHOICE_PREFIX,
    MINE_PREFIX,
    RESOLVE_FIELD,
    STATE_FIELD,
    THEIRS_PREFIX,
)
from tests.admin.test_resolution_admin import RESOLVE_FORM, _bob_saves, _client, _edit, _row
from tests.demo.models import Article
from tests.support.form_reader import form_data

pytestmark = [pytest.mark.hostile, pytest.mark.django_db, pytest.mark.urls("tests.support.plain_admin")]

Data = dict[str, Any]


def _without(prefix: str, field: str | None = None) -> Callable[[Data], Data]:
    def change(data: Data) -> Data:
        return {
            k: v
            for k, v in data.items()
            if not (k.startswith(prefix) and (field is None or k[len(prefix) :].split(".")[0] == field))
        }

    return change


def _with(**extra: Any) -> Callable[[Data], Data]:
    def change(data: Data) -> Data:
        return {**data, **extra}

    return change


def _set(key: str, value: Any) -> Callable[[Data], Data]:
    return _with(**{key: value})


MALFORMED: dict[str, Callable[[Data], Data]] = {
    "choice neither mine nor theirs": _set(CHOICE_PREFIX + "title", "both"),
    "empty choice": _set(CHOICE_PREFIX + "title", ""),
    "two choices for one field": _set(CHOICE_PREFIX + "title", ["mine", "theirs"]),
    "choice for a field not in the form": _set(CHOICE_PREFIX + "secret_column", "mine"),
    "choice for the version": _set(CHOICE_PREFIX + "version", "theirs"),
    "choice for the snapshot": _set(CHOICE_PREFIX + BASE_FIELD, "mine"),
    "choice for a field only one side changed": _set(CHOICE_PREFIX + "body", "mine"),
    "value for a merged field (rebuilt from the signed state)": _set("title", "Forged"),
    "no state": _without(STATE_FIELD),
    "forged state": _set(STATE_FIELD, "forged:state"),
    "two states": lambda data: {**data, STATE_FIELD: [data[STATE_FIELD], data[STATE_FIELD]]},
    "mine value without a field": _set(MINE_PREFIX + "title", "x"),
    "mine value for an unknown field": _set(MINE_PREFIX + "nope.nope", "x"),
    "mine value for another field's input": _set(MINE_PREFIX + "title.status", "published"),
    "theirs value for the version": _set(THEIRS_PREFIX + "title.version", "1"),
    "unknown _concurrency_ key": _set("_concurrency_extra", "1"),
    "resolve flag not 1": _set(RESOLVE_FIELD, "yes"),
    "two resolve flags": _set(RESOLVE_FIELD, ["1", "1"]),
    "no snapshot": _without(BASE_FIELD),
    "forged snapshot": _set(BASE_FIELD, "forged:snapshot"),
    "two snapshots": lambda data: {**data, BASE_FIELD: [data[BASE_FIELD], data[BASE_FIELD]]},
    "no resolve flag, choices kept": _without(RESOLVE_FIELD),
}


@pytest.fixture
def setup() -> tuple[Client, str, Data, Article]:
    article = Article.objects.create(title="Title", body="Body", status="draft")
    url = reverse("admin:demo_article_change", args=[article.pk])
    alice, bob = _client("alice"), _client("bob")
    mine = _edit(alice.get(url), title="Alice's title")
    _bob_saves(bob, url, title="Bob's title")
    page = alice.post(url, mine)
    assert page.status_code == 409
    resolve = form_data(page.content, RESOLVE_FORM, _save="Save")
    # Nothing is preselected: the browser posts a choice only once the user made one.
    assert CHOICE_PREFIX + "title" not in resolve
    resolve[CHOICE_PREFIX + "title"] = "mine"
    return alice, url, resolve, article


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_resolution_is_a_400_page_and_saves_nothing(
    setup: tuple[Client, str, Data, Article], case: str
) -> None:
    alice, url, resolve, article = setup
    before = _row(article)
    response = alice.post(url, MALFORMED[case](resolve))
    assert response.status_code == 400, case
    html = response.content.decode()
    assert "The choices sent from the conflict resolution page are incomplete or not valid" in html
    assert "nothing was saved" in html
    assert f'href="{url}"' in html
    assert _row(article) == before


def test_resolution_without_a_choice_shows_the_page_again_with_an_error(
    setup: tuple[Client, str, Data, Article],
) -> None:
    alice, url, resolve, article = setup
    before = _row(article)
    response = alice.post(url, _without(CHOICE_PREFIX)(resolve))
    assert response.status_code == 409
    assert "Nothing was saved: choose “Keep mine” or “Take theirs” for the value marked below." in (
        response.content.decode()
    )
    assert 'class="concurrency-conflict concurrency-missing"' in response.content.decode()
    assert _row(article) == before
    again = form_data(response.content, RESOLVE_FORM, _save="Save")
    assert alice.post(url, {**again, CHOICE_PREFIX + "title": "theirs"}).status_code == 302
    assert _row(article)[:2] == ("Bob's title", "Body")


def test_the_well_formed_resolution_still_saves(setup: tuple[Client, str, Data, Article]) -> None:
    alice, url, resolve, article = setup
    response = alice.post(url, resolve)
    assert response.status_code == 302
    assert _row(article)[0] == "Alice's title"


def test_resolution_keys_for_a_row_that_does_not_exist_answer_as_django(
    setup: tuple[Client, str, Data, Article],
) -> None:
    alice, _url, resolve, _article = setup
    missing = reverse("admin:demo_article_change", args=[999_999])
    count = Article.objects.count()
    response = alice.post(missing, resolve, follow=True)
    # The answer a row deleted while editing gets: the input again, nothing saved, never a 500.
    assert response.status_code == 409
    assert "deleted by someone else" in response.content.decode()
    assert Article.objects.count() == count
