"""Hostile versions fed to the core entry points: refused with a clear error, never a write.

Every value of the catalogue in tests/support/hostile.py goes to the signing helpers,
to ``save()`` and ``delete()`` (what any adapter finally hands the core) and
to the API lookups. Each attempt is counted, and the database must be exactly
as it was. The web, HTTP and REST framework entry points are fed the same
catalogue in tests/forms/, tests/admin/ and tests/http/test_hostile_input.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction

from concurrency.api import get_version, is_changed
from concurrency.exceptions import RecordModifiedError
from concurrency.signing import sign_version, unsign_version
from tests.demo.models import Article, SimpleConcurrentModel
from tests.support.hostile import MISSING, core_values, count, raw_values, report, signed_values, snapshot

pytestmark = [pytest.mark.hostile, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def rows() -> tuple[Article, Article, SimpleConcurrentModel]:
    row = Article.objects.create(title="row")
    row.save()  # version 2: not the initial one
    other = Article.objects.create(title="other")
    # Same primary key on another model: a signature replayed across models.
    foreign = SimpleConcurrentModel.objects.create(pk=row.pk, username="foreign")
    return row, other, foreign


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print("\n" + report("core."))


# --- Signed versions (what forms, the admin and list_editable send back) ------


def test_unsign_version_refuses_every_hostile_value(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    tried = 0
    for kind, value in [*raw_values(), *signed_values(row, other, foreign)]:
        signed = None if value is MISSING else value
        with pytest.raises(ValueError):
            unsign_version(Article, row.pk, signed)
            pytest.fail(f"{kind} {value!r} was accepted")
        tried += 1
        count("core.signing.unsign_version")
    assert unsign_version(Article, row.pk, sign_version(Article, row.pk, row.version)) == row.version
    assert tried >= 60


# --- The compare-and-swap itself, handed a hostile version --------------------


def _hostile_save(instance: Article, value: Any) -> BaseException | None:
    """Save ``instance`` holding version ``value``; return the error, if any."""
    instance.version = value
    instance.title = "overwritten"
    try:
        with transaction.atomic():
            instance.save()
    except (RecordModifiedError, ValidationError, ValueError, TypeError, OverflowError, DatabaseError) as exc:
        return exc
    return None


def test_save_with_hostile_version_never_writes(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    before = snapshot()
    tried = 0
    for kind, value in core_values(row, other, foreign):
        instance = Article.objects.get(pk=row.pk)
        error = _hostile_save(instance, value)
        assert error is not None, f"{kind} {value!r}: a save with this version was accepted"
        assert snapshot() == before, f"{kind} {value!r} changed the database"
        tried += 1
        count("core.Model.save")
    assert tried >= 70


def test_delete_with_hostile_version_never_deletes(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    before = snapshot()
    tried = 0
    for kind, value in core_values(row, other, foreign):
        instance = Article.objects.get(pk=row.pk)
        instance.version = value
        with pytest.raises((RecordModifiedError, ValueError, TypeError, OverflowError, DatabaseError)):
            with transaction.atomic():
                instance.delete()
            pytest.fail(f"{kind} {value!r}: a delete with this version was accepted")
        assert snapshot() == before, f"{kind} {value!r} changed the database"
        tried += 1
        count("core.Model.delete")
    assert tried >= 70


def test_api_lookups_with_hostile_version_find_nothing(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    tried = 0
    for kind, value in core_values(row, other, foreign):
        with pytest.raises((Article.DoesNotExist, ValueError, TypeError, ValidationError, DatabaseError)):
            with transaction.atomic():
                get_version(row, value)
            pytest.fail(f"get_version: {kind} {value!r} found a row")
        instance = Article.objects.get(pk=row.pk)
        instance.version = value
        try:
            with transaction.atomic():
                changed = is_changed(instance)
        except (ValueError, TypeError, ValidationError, DatabaseError):
            changed = True
        assert changed, f"is_changed: {kind} {value!r} looked current"
        tried += 2
        count("core.api.get_version")
        count("core.api.is_changed")
    assert tried >= 120
