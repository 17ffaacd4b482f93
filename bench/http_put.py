#!/usr/bin/env python
"""Time a PUT through the concurrency DRF mixins against a plain DRF UpdateAPIView.

    python bench/http_put.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N] [--block N]

(Not bench/http.py: bench/ is first on sys.path, where that name would hide the
standard library's http package from every script here.)

Variants, interleaved in shuffled blocks in one process on one database:
  plain       generics.UpdateAPIView + ModelSerializer (the model is versioned, so
              the save is still the conditional UPDATE, with the version loaded)
  if-match    VersionedViewMixin + VersionedSerializerMixin, version from If-Match
  body        the same with require_if_match = False, version in the JSON body
each once in autocommit mode and once inside a transaction per request (as with
ATOMIC_REQUESTS, where the mixin adds a savepoint). The table gives the median
time per request, the ratio to plain and the SQL statements per request.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import _setup

MODES = {"autocommit": False, "ATOMIC_REQUESTS": True}


def run(db: str, rounds: int, block: int) -> None:
    _setup.setup(db, ["rest_framework", "benchapp"])
    from benchapp.models import AutoInc
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from rest_framework import generics, permissions, serializers
    from rest_framework.test import APIRequestFactory

    from concurrency.http import make_etag
    from concurrency.rest_framework import VersionedSerializerMixin, VersionedViewMixin

    _setup.create_tables(AutoInc)

    class PlainSerializer(serializers.ModelSerializer):
        class Meta:
            model = AutoInc
            fields = ["id", "name", "amount", "note", "version"]
            read_only_fields = ["version"]

    class VersionedSerializer(VersionedSerializerMixin, serializers.ModelSerializer):
        class Meta:
            model = AutoInc
            fields = ["id", "name", "amount", "note", "version"]

    class PlainView(generics.UpdateAPIView):
        queryset = AutoInc.objects.all()
        serializer_class = PlainSerializer

    class IfMatchView(VersionedViewMixin, generics.UpdateAPIView):
        queryset = AutoInc.objects.all()
        serializer_class = VersionedSerializer

    class BodyView(IfMatchView):
        require_if_match = False

    open_access: dict[str, Any] = {"authentication_classes": [], "permission_classes": [permissions.AllowAny]}
    views = {
        "plain": PlainView.as_view(**open_access),
        "if-match": IfMatchView.as_view(**open_access),
        "body": BodyView.as_view(**open_access),
    }
    factory = APIRequestFactory()
    rows = {(mode, name): AutoInc.objects.create(name=f"{mode} {name}") for mode in MODES for name in views}
    versions = {key: row.version for key, row in rows.items()}

    def put(mode: str, name: str, i: int) -> float:
        """PUT once with the version the previous answer gave; return the seconds it took."""
        row = rows[mode, name]
        data: dict[str, Any] = {"name": row.name, "amount": i, "note": f"n{i}"}
        headers: dict[str, str] = {}
        if name == "if-match":
            row.version = versions[mode, name]
            headers["HTTP_IF_MATCH"] = make_etag(row)
        elif name == "body":
            data["version"] = versions[mode, name]
        request = factory.put("/", data, format="json", **headers)
        view = transaction.atomic(views[name]) if MODES[mode] else views[name]
        start = time.perf_counter()
        response = view(request, pk=row.pk)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise SystemExit(f"{mode} {name}: {response.status_code} {getattr(response, 'data', '')}")
        versions[mode, name] = response.data["version"]
        return elapsed

    statements: dict[tuple[str, str], list[str]] = {}
    for key in rows:  # warm up and count statements
        for i in range(10):
            put(*key, i)
        with CaptureQueriesContext(connection) as ctx:
            put(*key, 0)
        statements[key] = [q["sql"].split()[0] for q in ctx.captured_queries]

    samples: dict[tuple[str, str], list[float]] = {key: [] for key in rows}
    order = list(rows) * rounds
    random.seed(7)
    random.shuffle(order)
    for key in order:
        for i in range(block):
            samples[key].append(put(*key, i))

    print(f"\n{db}  ({len(samples['autocommit', 'plain'])} PUTs per variant, {connection.vendor})")
    print(f"{'mode':<16} {'variant':<9} {'median':>10} {'ratio':>6} {'stmts':>6}  statements")
    for mode in MODES:
        base = statistics.median(samples[mode, "plain"])
        for name in views:
            med = statistics.median(samples[mode, name])
            sql = statements[mode, name]
            print(
                f"{mode:<16} {name:<9} {med * 1e6:>8.0f}µs {med / base:>6.2f} {len(sql):>6}  {', '.join(sql)}"
            )


def main() -> None:
    _setup.cli(__doc__, run, rounds=20, block=10)


if __name__ == "__main__":
    main()
