#!/usr/bin/env python
"""Time versioned bulk writes against Django's own on an identical plain model.

    python bench/bulk.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rows 1000] [--rounds 15]

- ``bulk_update``: ``VersionedQuerySet.bulk_update()`` (checks every row's
  version in the UPDATE, bumps it) on the AutoInc and Integer models, against
  Django's ``QuerySet.bulk_update()`` on the plain model; 1 and 2 fields.
- the same with 1% of the rows made stale just before (``on_conflict="skip"``:
  the conflict path, which on MariaDB re-runs the batch);
- ``update()``: ``VersionedQuerySet.update()`` (bumps every version) against
  ``QuerySet.update()``.

Variants run interleaved in shuffled order; the table gives medians, the
ratio to plain Django and the SQL statements per call (transaction and
savepoint statements included). Run with the project's virtualenv (python3 dev.py bench).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import _setup


def run(db: str, rows: int, rounds: int) -> None:
    _setup.setup(db, ["benchapp"])
    from benchapp.models import AutoInc, Integer, Plain
    from django.db import connection
    from django.db.models import F, QuerySet
    from django.test.utils import CaptureQueriesContext

    from concurrency.managers import VersionedQuerySet

    models = [Plain, AutoInc, Integer]
    _setup.create_tables(*models)
    for model in models:
        model.objects.bulk_create([model(name=f"row{i}") for i in range(rows)])

    def queryset(model: type) -> QuerySet:
        return QuerySet(model) if model is Plain else VersionedQuerySet(model)

    def bulk(model: type, fields: list[str], stale: int = 0) -> Callable[[int, Any], int]:
        def call(step: int, watch: Any) -> int:
            objs = list(model.objects.order_by("pk"))  # current versions; not timed
            for obj in objs:
                obj.amount = step
                obj.note = f"n{step}"
            if stale and model is not Plain:  # someone else writes a few rows meanwhile
                QuerySet(model).filter(pk__in=[o.pk for o in objs[:: rows // stale]]).update(
                    version=F("version") + 1
                )
            with watch:
                start = time.perf_counter_ns()
                if stale and model is not Plain:
                    queryset(model).bulk_update(objs, fields, on_conflict="skip")
                else:
                    queryset(model).bulk_update(objs, fields)
                return time.perf_counter_ns() - start

        return call

    def update(model: type) -> Callable[[int, Any], int]:
        def call(step: int, watch: Any) -> int:
            with watch:
                start = time.perf_counter_ns()
                queryset(model).update(amount=F("amount") + 1)
                return time.perf_counter_ns() - start

        return call

    labels = {Plain: "Django (plain model)", AutoInc: "versioned, AutoInc", Integer: "versioned, Integer"}
    variants: dict[tuple[str, type], Callable[[int, Any], int]] = {}
    for model in models:
        variants[("bulk_update, 1 field", model)] = bulk(model, ["amount"])
        variants[("bulk_update, 2 fields", model)] = bulk(model, ["amount", "note"])
        variants[("bulk_update, 1% stale", model)] = bulk(model, ["amount"], stale=rows // 100)
        variants[("update() of every row", model)] = update(model)
    times: dict[tuple[str, type], list[int]] = {key: [] for key in variants}
    statements: dict[tuple[str, type], int] = {}
    for key, call in variants.items():  # warm up and count the statements of the timed part
        ctx = CaptureQueriesContext(connection)
        call(0, ctx)
        statements[key] = len(ctx.captured_queries)

    order = list(variants) * rounds
    random.seed(7)
    random.shuffle(order)
    for step, key in enumerate(order, 1):
        times[key].append(variants[key](step, nullcontext()))

    server = ".".join(map(str, connection.get_database_version()))
    print(f"\n{db}  ({connection.vendor} {server}, {rows} rows, {rounds} rounds per variant)")
    print(f"{'operation':<24} {'variant':<22} {'median':>10} {'ratio':>7} {'statements':>11}")
    for key in sorted(variants, key=lambda k: (k[0], models.index(k[1]))):
        operation, model = key
        median = statistics.median(times[key]) / 1e6
        base = statistics.median(times[(operation, Plain)]) / 1e6
        ratio = median / base
        print(f"{operation:<24} {labels[model]:<22} {median:>8.2f}ms {ratio:>7.2f} {statements[key]:>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="all")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.db == "all":
        for db in ("sqlite-mem", "sqlite", "postgresql", "mariadb"):
            options = ["--db", db, "--rows", str(args.rows), "--rounds", str(args.rounds)]
            subprocess.run([sys.executable, __file__, *options], check=True)
        return
    run(args.db, args.rows, args.rounds)


if __name__ == "__main__":
    main()
