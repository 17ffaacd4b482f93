"""Hostile versions fed to every entry point: refused with a clear error, never a write.

The catalogue below is what an attacker, a broken client or a stale tab can
send as a version: nothing at all, empty or blank strings, words, fractions,
numbers out of range, negative numbers, non-ASCII digits and control
characters, signatures that were tampered with, and genuine signatures issued
for another row or another model. Each entry point is fed every one of them;
each attempt is counted, and the database must be exactly as it was.
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

pytestmark = pytest.mark.django_db(transaction=True)

MISSING = object()

# Values a client may send in place of a version, by kind.
RAW: dict[str, list[Any]] = {
    "missing": [MISSING, None],
    "empty": ["", " ", "\t\n"],
    "non-numeric": [
        "abc",
        "1.5",
        "1e3",
        "0x10",
        "None",
        "null",
        "true",
        "[]",
        "{}",
        "1;DROP TABLE x",
        "1 OR 1=1",
    ],
    "huge": [str(2**63), str(2**64), "9" * 100, "9" * 5000],
    "negative": ["-1", str(-(2**63)), "-0"],
    "unicode": ["١٢٣", "１２", "½", "\x00", "1\x00", "ü", "🙂", "1\u200b", "Ⅻ"],
    "zero": ["0", 0],
}

TRIED: dict[str, int] = {}


def _count(entry_point: str) -> None:
    TRIED[entry_point] = TRIED.get(entry_point, 0) + 1


def raw_values(*, missing: bool = True) -> Iterator[tuple[str, Any]]:
    """Yield (kind, value); ``missing=False`` leaves out the not-sent marker (for model attributes)."""
    for kind, values in RAW.items():
        for value in values:
            if missing or value is not MISSING:
                yield kind, value


def signed_values(row: Any, other: Any, foreign: Any) -> Iterator[tuple[str, Any]]:
    """Yield hostile signed versions for ``row``: tampered, and replayed from ``other`` and ``foreign``."""
    genuine = sign_version(type(row), row.pk, row.version)
    value, _, signature = genuine.partition(":")
    yield "tampered", f"{int(value) + 1}:{signature}"
    yield "tampered", f"{value}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}"
    yield "tampered", f"{value}:"
    yield "tampered", f":{signature}"
    yield "unsigned", value  # the genuine number without its signature
    yield "tampered", genuine + ":" + signature
    yield "tampered", genuine.upper()
    yield "replayed", sign_version(type(other), other.pk, row.version)
    yield "replayed", sign_version(type(other), other.pk, other.version)
    yield "replayed", sign_version(type(foreign), row.pk, row.version)
    for kind, raw in raw_values():
        if raw is not MISSING and raw is not None:
            yield f"{kind}, signed for another row", sign_version(type(other), other.pk, raw)


def core_values(row: Any, other: Any, foreign: Any) -> Iterator[tuple[str, Any]]:
    """Yield what may reach a model's version attribute when an adapter passes input through unchecked."""
    yield from raw_values(missing=False)
    for kind, value in signed_values(row, other, foreign):
        if kind != "unsigned":  # the genuine number is a genuine version here
            yield kind, value
    yield "replayed", other.version
    yield "stale", row.version - 1


def _snapshot() -> list[tuple[Any, ...]]:
    return [
        *Article.objects.order_by("pk").values_list("pk", "title", "version"),
        *SimpleConcurrentModel.objects.order_by("pk").values_list("pk", "username", "version"),
    ]


@pytest.fixture(autouse=True)
def _signer(settings: Any) -> None:
    # The default names concurrency.forms, which re-exports this class.
    settings.CONCURRENCY_FIELD_SIGNER = "concurrency.signing.VersionFieldSigner"


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
    total = sum(TRIED.values())
    detail = ", ".join(f"{name}: {n}" for name, n in sorted(TRIED.items()))
    print(f"\nhostile inputs tried: {total} ({detail})")


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
        _count("signing.unsign_version")
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
    before = _snapshot()
    tried = 0
    for kind, value in core_values(row, other, foreign):
        instance = Article.objects.get(pk=row.pk)
        error = _hostile_save(instance, value)
        assert error is not None, f"{kind} {value!r}: a save with this version was accepted"
        assert _snapshot() == before, f"{kind} {value!r} changed the database"
        tried += 1
        _count("Model.save")
    assert tried >= 70


def test_delete_with_hostile_version_never_deletes(rows: tuple[Any, ...]) -> None:
    row, other, foreign = rows
    before = _snapshot()
    tried = 0
    for kind, value in core_values(row, other, foreign):
        instance = Article.objects.get(pk=row.pk)
        instance.version = value
        with pytest.raises((RecordModifiedError, ValueError, TypeError, OverflowError, DatabaseError)):
            with transaction.atomic():
                instance.delete()
            pytest.fail(f"{kind} {value!r}: a delete with this version was accepted")
        assert _snapshot() == before, f"{kind} {value!r} changed the database"
        tried += 1
        _count("Model.delete")
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
        _count("api.get_version")
        _count("api.is_changed")
    assert tried >= 120
