"""Hostile versions fed to the admin: the change view, actions and list_editable.

Every value of the catalogue in tests/support/hostile.py must end in a form error or
an error message on a page with a 2xx/3xx/4xx status, never a 500, and the
database must be exactly as it was. Each attempt is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.urls import reverse

from tests.demo.models import Article, SimpleConcurrentModel
from tests.support.form_reader import form_data
from tests.support.hostile import (
    MISSING,
    article_rows,
    count,
    hostile,
    raw_values,
    report,
    signed_values,
    snapshot,
    with_value,
)

pytestmark = [pytest.mark.hostile, pytest.mark.django_db]


@pytest.fixture
def rows() -> tuple[Article, Article, SimpleConcurrentModel]:
    return article_rows()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print("\n" + report("admin."))


def _messages(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_admin_change_view_answers_every_hostile_version_with_a_form_error(
    admin_client: Any, rows: tuple[Any, ...]
) -> None:
    row, other, foreign = rows
    url = reverse("admin:demo_article_change", args=[row.pk])
    base = form_data(admin_client.get(url).content, "article_form", title="overwritten")
    before = snapshot()
    tried = 0
    for kind, value in hostile(row, other, foreign):
        response = admin_client.post(url, with_value(base, "version", value))
        assert response.status_code == 200, f"{kind} {value!r}: {response.status_code}"
        assert response.context["adminform"].form.errors, f"{kind} {value!r}: no form error"
        assert snapshot() == before, f"{kind} {value!r} changed the database"
        tried += 1
        count("admin.change view")
    assert tried >= 70


def test_admin_action_refuses_every_hostile_selection(admin_client: Any, rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    url = reverse("admin:demo_article_changelist")
    selections = [f"{row.pk},{'' if v is None else v}" for _, v in raw_values() if v is not MISSING]
    # Selections carry plain numbers by design: the bare genuine number is the one honest value.
    selections += [f"{row.pk},{v}" for kind, v in signed_values(row, other, foreign) if kind != "unsigned"]
    selections += [
        str(row.pk),  # no version at all
        f"{row.pk},{other.version}",  # another row's version
        f"{row.pk},{row.version - 1}",  # stale
        f"{other.pk},{row.version}",  # this row's version on another row
        f"abc,{row.version}",
        f",{row.version}",
        f"{row.pk},,{row.version}",
        f"-{row.pk},{row.version}",
        f"{row.pk}\x00,{row.version}",
    ]
    before = snapshot()
    tried = 0
    for selection in selections:
        data = {"action": "publish", helpers.ACTION_CHECKBOX_NAME: [selection], "index": "0"}
        response = admin_client.post(url, data)
        assert response.status_code in (200, 302), f"{selection!r}: {response.status_code}"
        assert any("changed" in m or "could not be read" in m for m in _messages(response)), selection
        assert snapshot() == before, f"{selection!r} changed the database"
        tried += 1
        count("admin.action")
    assert tried >= 70


def test_list_editable_refuses_every_hostile_row_version(admin_client: Any, rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    url = reverse("admin:demo_article_changelist")
    page = admin_client.get(url)
    base = form_data(page.content, "changelist-form", _save="Save")
    index = next(i for i in range(2) if base[f"form-{i}-id"] == str(row.pk))
    base[f"form-{index}-title"] = "overwritten"
    name = f"form-{index}-_concurrency_version"
    before = snapshot()
    tried = 0
    for kind, value in hostile(row, other, foreign):
        response = admin_client.post(url, with_value(base, name, value))
        if response.status_code == 302:
            # The default policy saves the other rows and names the refused one.
            assert kind == "stale", f"{kind} {value!r}: redirected as if saved"
            assert any("someone else" in m for m in _messages(response)), _messages(response)
        else:
            assert response.status_code == 200, f"{kind} {value!r}: {response.status_code}"
            assert "missing or not valid" in response.content.decode(), f"{kind} {value!r}: no row error"
        assert snapshot() == before, f"{kind} {value!r} changed the database"
        tried += 1
        count("admin.list_editable")
    assert tried >= 70


def test_admin_action_with_a_primary_key_beyond_64_bits_is_a_message(
    admin_client: Any, rows: tuple[Any, ...]
) -> None:
    row = rows[0]
    before = snapshot()
    data = {"action": "publish", helpers.ACTION_CHECKBOX_NAME: [f"{'9' * 30},{row.version}"], "index": "0"}
    response = admin_client.post(reverse("admin:demo_article_changelist"), data)
    count("admin.action")
    assert response.status_code in (200, 302)
    assert any("could not be read" in str(m) for m in get_messages(response.wsgi_request))
    assert snapshot() == before
