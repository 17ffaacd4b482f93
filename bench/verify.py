#!/usr/bin/env python
"""Time a decision guarded by verify_unchanged() against the same decision unguarded.

    python bench/verify.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N] [--insn]

One transaction reads N rows of a versioned model, decides, saves one other
row and commits. Plain Django is exactly that (the baseline); the guarded
variant also calls ``verify_unchanged(*rows)`` before the save, so the ratio
is the price of the check alone. For reference, the pessimistic plain-Django
way to the same guarantee reads the rows with ``select_for_update()``.
Variants are interleaved in shuffled blocks; the table gives the median time
per transaction and of its work before the commit, the ratios to the
baseline, the SQL statements of one transaction, and the load average of the
machine around the run.

The commit is an fsync (0.2 ms on an idle disk, 4 ms and more on a shared
one) that often outweighs the rest, so the whole transaction's ratio swings
with the machine; the work before the commit is the part the check adds to.
``--insn`` adds client instructions per transaction (``valgrind
--tool=callgrind``, each variant's loop counted alone through
``sys.call_tracing()``): the work this library adds in the client,
independent of load; the server's share is in the wall time only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import _setup

SIZES = (2, 20, 100)
KINDS = ("plain", "guarded", "select_for_update")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _prepare(db: str) -> Any:
    """Configure Django on ``db`` with 101 rows; return the decision to time."""
    _setup.setup(db, ["benchapp"])
    from benchapp.models import AutoInc
    from django.db import transaction

    from concurrency.api import verify_unchanged

    _setup.create_tables(AutoInc)
    AutoInc.objects.bulk_create(AutoInc(name=f"row{i}") for i in range(101))
    target = AutoInc.objects.get(name="row100")
    others = AutoInc.objects.exclude(pk=target.pk).order_by("pk")

    def decide(n: int, kind: str) -> int:
        """Run one transaction; return the clock just before its commit."""
        with transaction.atomic():
            query = others.select_for_update() if kind == "select_for_update" else others
            rows = list(query[:n])
            if kind == "guarded":
                verify_unchanged(*rows)
            target.amount = sum(row.amount for row in rows) + 1
            target.save()
            return time.perf_counter_ns()

    return decide


def run(db: str, rounds: int, block: int) -> None:
    load = _load()
    decide = _prepare(db)
    from benchapp.models import AutoInc
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from concurrency.api import verify_unchanged

    variants = [(n, kind) for n in SIZES for kind in KINDS]
    statements = {}
    for variant in variants:
        with CaptureQueriesContext(connection) as ctx:
            decide(*variant)
        statements[variant] = len(ctx.captured_queries)
    with transaction.atomic():
        rows = list(AutoInc.objects.order_by("pk")[:100])
        with CaptureQueriesContext(connection) as ctx:
            verify_unchanged(*rows)
    check = [_shape(q["sql"]) for q in ctx.captured_queries]
    times: dict[tuple[int, str], list[int]] = {v: [] for v in variants}
    work: dict[tuple[int, str], list[int]] = {v: [] for v in variants}
    order = variants * rounds
    random.seed(7)
    random.shuffle(order)
    clock = time.perf_counter_ns
    for variant in order:
        for _ in range(block):
            t0 = clock()
            committing = decide(*variant)
            times[variant].append(clock() - t0)
            work[variant].append(committing - t0)
    print(f"\n{db}  ({rounds * block} transactions per variant, {connection.display_name})")
    print(f"load average before {load}, after {_load()}")
    print("median per transaction / its work before the commit; sfu: select_for_update()")
    print(
        f"{'rows read':>9} {'plain':>13} {'guarded':>13} {'ratio':>11} {'sfu':>13} {'ratio':>11}  statements"
    )
    for n in SIZES:
        total = [statistics.median(times[(n, kind)]) for kind in KINDS]
        before = [statistics.median(work[(n, kind)]) for kind in KINDS]
        cells = [f"{t / 1000:>5.0f}/{b / 1000:>4.0f}µs" for t, b in zip(total, before, strict=True)]
        ratios = [f"{t / total[0]:>5.2f}/{b / before[0]:.2f}" for t, b in zip(total, before, strict=True)]
        counts = "/".join(str(statements[(n, kind)]) for kind in KINDS)
        print(
            f"{n:>9} {cells[0]:>13} {cells[1]:>13} {ratios[1]:>11} {cells[2]:>13} {ratios[2]:>11}  {counts}"
        )
    print(f"verify_unchanged() of 100 rows sends: {' + '.join(check)}")


def drive_insn(db: str, loops: int) -> None:
    """Under callgrind: each variant's loop inside sys.call_tracing(), which callgrind counts alone."""
    decide = _prepare(db)
    variants = [(n, kind) for n in SIZES for kind in KINDS]
    for variant in variants:

        def loop(variant: tuple[int, str] = variant) -> None:
            for _ in range(loops):
                decide(*variant)

        loop()  # warm: the first calls compile and cache
        sys.call_tracing(loop, ())
    print(json.dumps([list(v) for v in variants]))


def insn(db: str, loops: int) -> None:
    """Print client instructions per transaction, and the ratios to plain Django."""
    out, totals = _setup.callgrind([sys.executable, __file__, "--driver", "--db", db, "--loops", str(loops)])
    variants = [tuple(v) for v in json.loads(out.strip().splitlines()[-1])]
    counts = {variant: total / loops for variant, total in zip(variants, totals, strict=True)}
    print(f"\n{db}: client instructions per transaction (callgrind, {loops} per variant)")
    print(f"{'rows read':>9} {'plain':>9} {'guarded':>9} {'ratio':>6} {'sfu':>9} {'ratio':>6}  check alone")
    for n in SIZES:
        plain, guarded, sfu = (counts[(n, kind)] for kind in KINDS)
        print(
            f"{n:>9} {plain / 1000:>8.0f}k {guarded / 1000:>8.0f}k {guarded / plain:>6.3f} "
            f"{sfu / 1000:>8.0f}k {sfu / plain:>6.3f}  {(guarded - plain) / 1000:.0f}k"
        )


def _shape(sql: str) -> str:
    """Return the verb of ``sql`` and its locking clause: ``SELECT … FOR SHARE``."""
    verb = sql.split(None, 1)[0]
    for lock in ("FOR SHARE", "LOCK IN SHARE MODE", "FOR UPDATE"):
        if sql.endswith(lock):
            return f"{verb} … {lock}"
    return verb


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="all")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--insn", action="store_true", help="also count client instructions (callgrind)")
    parser.add_argument("--loops", type=int, default=100, help="transactions per variant under --insn")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        drive_insn(args.db, args.loops)
        return
    dbs = ("sqlite", "postgresql", "mariadb") if args.db == "all" else (args.db,)
    for db in dbs:
        # A fresh interpreter per database: Django is configured once per process.
        cmd = [sys.executable, __file__, "--db", db, "--rounds", str(args.rounds), "--block", str(args.block)]
        if len(dbs) > 1 or args.insn:
            # (--insn: the counting process recreates the database, which this one would hold open.)
            subprocess.run(cmd, check=True)
        else:
            run(db, args.rounds, args.block)
    if args.insn:
        for db in dbs:
            insn("sqlite-mem" if db == "sqlite" else db, args.loops)


if __name__ == "__main__":
    main()
