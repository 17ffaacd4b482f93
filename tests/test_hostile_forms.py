"""Hostile versions fed to ConcurrentForm (and so to every view that uses it).

Every value of the catalogue in tests/hostile.py must end in a form error,
never an exception or a save, and the database must be exactly as it was.
Each attempt is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from concurrency.forms import ConcurrentForm
from concurrency.signing import sign_version
from tests.demo.models import Article, SimpleConcurrentModel
from tests.hostile import MISSING, count, raw_values, report, signed_values, snapshot

pytestmark = pytest.mark.django_db


class ArticleForm(ConcurrentForm):
    class Meta:
        model = Article
        fields = ["title", "body", "status", "version"]


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
    print("\n" + report("forms."))


def hostile(row: Any, other: Any, foreign: Any) -> list[tuple[str, Any]]:
    """Return every hostile value for a signed version field of ``row``, and a stale genuine one."""
    stale = sign_version(Article, row.pk, row.version - 1)
    return [*raw_values(), *signed_values(row, other, foreign), ("stale", stale)]


def _with(data: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    data = dict(data)
    if value is MISSING:
        data.pop(name, None)
    else:
        data[name] = "" if value is None else str(value)
    return data


def test_concurrent_form_refuses_every_hostile_version(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    genuine = ArticleForm(instance=row)
    base = {"title": "overwritten", "body": "", "status": "draft", "version": genuine["version"].value()}
    assert ArticleForm(base, instance=Article.objects.get(pk=row.pk)).is_valid()
    before = snapshot()
    tried = 0
    for kind, value in hostile(row, other, foreign):
        form = ArticleForm(_with(base, "version", value), instance=Article.objects.get(pk=row.pk))
        assert not form.is_valid(), f"{kind} {value!r} was accepted"
        assert snapshot() == before
        tried += 1
        count("forms.ConcurrentForm")
    assert tried >= 70
