"""The catalogue of hostile versions shared by the hostile-input tests (``pytest -m hostile``).

What an attacker, a broken client or a stale tab can send as a version:
nothing at all, empty or blank strings, words, fractions, numbers out of
range, negative numbers, non-ASCII digits and control characters, signatures
that were tampered with, and genuine signatures issued for another row or
another model.

``SINCE``: what can be sent as the ``since`` date and time of the live
"changed since you opened it" endpoint: dates that do not exist, offsets
beyond a day, instants outside the years 1 to 9999 in UTC, and text that is
not a date at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from concurrency.signing import sign_version
from tests.demo.models import Article, SimpleConcurrentModel

__all__ = [
    "MISSING",
    "RAW",
    "SINCE",
    "TRIED",
    "core_values",
    "count",
    "raw_values",
    "report",
    "signed_values",
    "since_values",
    "snapshot",
]

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

# Values a client may send as ``?since=`` instead of an ISO 8601 date and time with an offset.
SINCE: dict[str, list[str]] = {
    "impossible date": [
        "2026-13-01T00:00:00+00:00",
        "2026-02-30T00:00:00+00:00",
        "2026-04-31T12:00:00+00:00",
        "2026-00-10T12:00:00+00:00",
        "2026-01-01T25:00:00+00:00",
        "2026-01-01T12:60:00+00:00",
    ],
    "bad offset": ["2026-01-01T00:00:00+25:00", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00-99:99"],
    # Valid instants that Python cannot hold in UTC (SQLite and MariaDB are sent UTC).
    "overflow": ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"],
    "not a date": [
        "yesterday",
        "2026",
        "2026-01-01T00:00:00+00:00junk",
        "١٢٣٤-٠١-٠١T00:00:00+00:00",
        "2026-01-01T00:00:00\x00+00:00",
        "9" * 100,
        "2026-01-01T00:00:00.000000000000000000000000000000000000000000000000+00:00",
    ],
}

TRIED: dict[str, int] = {}


def count(entry_point: str) -> None:
    TRIED[entry_point] = TRIED.get(entry_point, 0) + 1


def raw_values(*, missing: bool = True) -> Iterator[tuple[str, Any]]:
    """Yield (kind, value); ``missing=False`` leaves out the not-sent marker (for model attributes)."""
    for kind, values in RAW.items():
        for value in values:
            if missing or value is not MISSING:
                yield kind, value


def since_values() -> Iterator[tuple[str, str]]:
    """Yield (kind, value) for every malformed ``since``."""
    for kind, values in SINCE.items():
        for value in values:
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


def snapshot() -> list[tuple[Any, ...]]:
    return [
        *Article.objects.order_by("pk").values_list("pk", "title", "version"),
        *SimpleConcurrentModel.objects.order_by("pk").values_list("pk", "username", "version"),
    ]


def report(prefix: str) -> str:
    """Return a one-line summary of the attempts counted for entry points starting with ``prefix``."""
    mine = {name: n for name, n in TRIED.items() if name.startswith(prefix)}
    detail = ", ".join(f"{name}: {n}" for name, n in sorted(mine.items()))
    return f"hostile inputs tried: {sum(mine.values())} ({detail})"


def article_rows() -> tuple[Article, Article, SimpleConcurrentModel]:
    """Create the row under attack (at version 2), another row, and a row of another model with its pk."""
    row = Article.objects.create(title="row", status="draft")
    row.save()  # version 2: not the initial one
    other = Article.objects.create(title="other", status="draft")
    foreign = SimpleConcurrentModel.objects.create(pk=row.pk, username="foreign")
    return row, other, foreign


def hostile(row: Any, other: Any, foreign: Any) -> list[tuple[str, Any]]:
    """Return every hostile value for a signed version field of ``row``, and a stale genuine one."""
    stale = sign_version(Article, row.pk, row.version - 1)
    return [*raw_values(), *signed_values(row, other, foreign), ("stale", stale)]


def with_value(data: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """Return ``data`` with ``name`` set to ``value`` (or removed, for MISSING)."""
    data = dict(data)
    if value is MISSING:
        data.pop(name, None)
    else:
        data[name] = "" if value is None else str(value)
    return data
