#!/usr/bin/env python
"""Time a decision guarded by verify_unchanged() against the same decision unguarded.

    python bench/verify.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

One transaction reads N rows of a versioned model, decides, and saves one
other row; the guarded variant also calls ``verify_unchanged(*rows)`` before
the save. Variants are interleaved in shuffled blocks; the table gives the
median time per transaction, the ratio to the unguarded one and the SQL
statements of one transaction; below it, the statements the check itself sends
(a locking SELECT on PostgreSQL and MariaDB: no row is written).
"""

from __future__ import annotations

import random
import statistics
import time

import _setup


def run(db: str, rounds: int, block: int) -> None:
    _setup.setup(db, ["benchapp"])
    from benchapp.models import AutoInc
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from concurrency.api import verify_unchanged

    _setup.create_tables(AutoInc)
    for i in range(101):
        AutoInc.objects.create(name=f"row{i}")
    target = AutoInc.objects.get(name="row100")

    def decide(n: int, guard: bool) -> None:
        with transaction.atomic():
            rows = list(AutoInc.objects.exclude(pk=target.pk).order_by("pk")[:n])
            if guard:
                verify_unchanged(*rows)
            target.amount = sum(row.amount for row in rows) + 1
            target.save()

    variants = [(n, guard) for n in (2, 20, 100) for guard in (False, True)]
    statements = {}
    for variant in variants:
        with CaptureQueriesContext(connection) as ctx:
            decide(*variant)
        statements[variant] = len(ctx.captured_queries)
    with transaction.atomic():
        rows = list(AutoInc.objects.exclude(pk=target.pk).order_by("pk")[:100])
        with CaptureQueriesContext(connection) as ctx:
            verify_unchanged(*rows)
    check = " + ".join(_shape(query["sql"]) for query in ctx.captured_queries)
    times: dict[tuple[int, bool], list[int]] = {v: [] for v in variants}
    order = variants * rounds
    random.seed(7)
    random.shuffle(order)
    clock = time.perf_counter_ns
    for variant in order:
        for _ in range(block):
            t0 = clock()
            decide(*variant)
            times[variant].append(clock() - t0)
    print(f"\n{db}  ({rounds * block} transactions per variant, {connection.vendor})")
    print(f"{'rows read':>9} {'unguarded':>10} {'guarded':>9} {'ratio':>6} {'stmts':>6} {'stmts':>6}")
    for n in (2, 20, 100):
        plain, guarded = statistics.median(times[(n, False)]), statistics.median(times[(n, True)])
        print(
            f"{n:>9} {plain / 1000:>8.0f}µs {guarded / 1000:>7.0f}µs {guarded / plain:>6.2f} "
            f"{statements[(n, False)]:>6} {statements[(n, True)]:>6}"
        )
    print(f"verify_unchanged() sends: {check}")


def _shape(sql: str) -> str:
    """Return the verb of ``sql`` and its locking clause: ``SELECT … FOR SHARE``."""
    verb = sql.split(None, 1)[0]
    for lock in ("FOR SHARE", "LOCK IN SHARE MODE", "FOR UPDATE"):
        if sql.endswith(lock):
            return f"{verb} … {lock}"
    return verb


def main() -> None:
    _setup.cli(__doc__, run, rounds=30, block=10, dbs=("sqlite", "postgresql", "mariadb"))


if __name__ == "__main__":
    main()
