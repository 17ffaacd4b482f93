"""Hostile versions fed to ConcurrentForm (and so to every view that uses it).

Every value of the catalogue in tests/support/hostile.py must end in a form error,
never an exception or a save, and the database must be exactly as it was.
Each attempt is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from concurrency.forms import ConcurrentForm
from tests.demo.models import Article, SimpleConcurrentModel
from tests.support.hostile import (
    article_rows,
    count,
    hostile,
    report,
    snapshot,
    with_value,
)

pytestmark = [pytest.mark.hostile, pytest.mark.django_db]


class ArticleForm(ConcurrentForm):
    class Meta:
        model = Article
        fields = ["title", "body", "status", "version"]


@pytest.fixture
def rows() -> tuple[Article, Article, SimpleConcurrentModel]:
    return article_rows()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print("\n" + report("forms."))


def test_concurrent_form_refuses_every_hostile_version(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    genuine = ArticleForm(instance=row)
    base = {"title": "overwritten", "body": "", "status": "draft", "version": genuine["version"].value()}
    assert ArticleForm(base, instance=Article.objects.get(pk=row.pk)).is_valid()
    before = snapshot()
    tried = 0
    for kind, value in hostile(row, other, foreign):
        form = ArticleForm(with_value(base, "version", value), instance=Article.objects.get(pk=row.pk))
        assert not form.is_valid(), f"{kind} {value!r} was accepted"
        assert snapshot() == before
        tried += 1
        count("forms.ConcurrentForm")
    assert tried >= 70
