#!/usr/bin/env python
"""Time get + modify + save of versioned models against an identical plain one.

    python bench/save.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

Models are interleaved in shuffled blocks in one process; the table gives the
median save time (and whole cycle) as a ratio to the plain model, and the SQL
statements per save. Run with the project's virtualenv (python3 dev.py bench).
"""

from __future__ import annotations

import random
import statistics
import time

import _setup


def run(db: str, rounds: int, block: int) -> None:
    _setup.setup(db, ["benchapp"])
    from benchapp.models import AutoInc, Integer, Plain
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    models = [Plain, AutoInc, Integer]
    _setup.create_tables(*models)
    rows = 50
    pks = {m: [m.objects.create(name=f"row{i}").pk for i in range(rows)] for m in models}
    saves: dict[type, list[float]] = {m: [] for m in models}
    cycles: dict[type, list[float]] = {m: [] for m in models}
    statements: dict[type, int] = {}
    clock = time.perf_counter_ns

    for model in models:  # warm up and count statements
        obj = model.objects.get(pk=pks[model][0])
        obj.amount += 1
        with CaptureQueriesContext(connection) as ctx:
            obj.save()
        statements[model] = len(ctx.captured_queries)

    order = models * rounds
    random.seed(7)
    random.shuffle(order)
    for model in order:
        ids = pks[model]
        for i in range(block):
            t0 = clock()
            obj = model.objects.get(pk=ids[i % rows])
            obj.amount += 1
            obj.note = f"n{i}"
            t1 = clock()
            obj.save()
            t2 = clock()
            saves[model].append(t2 - t1)
            cycles[model].append(t2 - t0)

    base_save = statistics.median(saves[Plain])
    base_cycle = statistics.median(cycles[Plain])
    print(f"\n{db}  ({len(saves[Plain])} saves per model, {connection.vendor})")
    print(f"{'model':<34} {'median save':>12} {'save ratio':>11} {'cycle ratio':>12} {'stmts/save':>11}")
    for model in models:
        label = {Plain: "plain model", AutoInc: "AutoIncVersionField", Integer: "IntegerVersionField"}[model]
        med = statistics.median(saves[model])
        print(
            f"{label:<34} {med / 1000:>10.1f}µs {med / base_save:>11.3f} "
            f"{statistics.median(cycles[model]) / base_cycle:>12.3f} {statements[model]:>11}"
        )


def main() -> None:
    _setup.cli(__doc__, run, rounds=60, block=25)


if __name__ == "__main__":
    main()
