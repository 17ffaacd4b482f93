#!/usr/bin/env python
"""Time get + modify + save of every kind of version field against an identical plain model.

    python bench/save.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N] [--block N]

Variants are interleaved in shuffled blocks in one process: save() of the plain
model and of one model per version field (ConditionalVersionField both with a
changed field and with the values the row already holds), save() of a plain
model whose table has the same trigger as the TriggerVersionField model (the
trigger's own cost, paid by the database), asave() of the plain and the
AutoIncVersionField model, and save() inside atomic() of the plain and the
ConditionalVersionField model (against the plain model's save in atomic()).
Each cell is the median save time as a ratio to the plain model's (asave()
to the plain model's asave()), with the SQL statements
of one save in brackets; a second table gives the same ratios in CPU time of
the benchmark process, which the load of a busy machine disturbs less (the
database server's own work is not in it). ``--db all`` runs SQLite (in memory), PostgreSQL and
MariaDB, each in a fresh interpreter, and prints one table of all of them. Run with the project's virtualenv
(python3 dev.py bench bench/save.py --db all).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import types
from typing import Any

import _setup

DBS = ("sqlite-mem", "postgresql", "mariadb")

# (label, model name, changed, how it saves: "sync", "async" or "atomic", baseline label)
VARIANTS = [
    ("plain model", "Plain", True, "sync", None),
    ("AutoIncVersionField", "AutoInc", True, "sync", "plain model"),
    ("IntegerVersionField", "Integer", True, "sync", "plain model"),
    ("TriggerVersionField", "Trigger", True, "sync", "plain model"),
    ("ConditionalVersionField, changed", "Conditional", True, "sync", "plain model"),
    ("ConditionalVersionField, unchanged", "Conditional", False, "sync", "plain model"),
    ("plain model + the same trigger", "PlainTrigger", True, "sync", "plain model"),
    ("plain model, asave()", "Plain", True, "async", None),
    ("AutoIncVersionField, asave()", "AutoInc", True, "async", "plain model, asave()"),
    ("plain model, in atomic()", "Plain", True, "atomic", None),
    ("Conditional, changed, in atomic()", "Conditional", True, "atomic", "plain model, in atomic()"),
    ("Conditional, unchanged, in atomic()", "Conditional", False, "atomic", "plain model, in atomic()"),
]
# Transaction control, which plain Django's atomic() sends too: not a statement of the save.
CONTROL = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")


def run(db: str, rounds: int, block: int) -> dict[str, Any]:
    _setup.setup(db, ["benchapp"])
    import benchapp.models
    from asgiref.sync import async_to_sync
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from concurrency.triggers import factory

    models = {name: getattr(benchapp.models, name) for name in {v[1] for v in VARIANTS}}
    _setup.create_tables(*models.values())
    maker = factory(connection)
    maker.create(models["Trigger"]._meta.get_field("version"))
    # The library's trigger on the plain model's table, under a name of its own.
    shim = types.SimpleNamespace(model=models["PlainTrigger"], column="version", _trigger_name="bench_plain")
    maker._run(maker.create_sql(shim))  # type: ignore[arg-type]
    rows = 50
    pks = {name: [m.objects.create(name=f"row{i}").pk for i in range(rows)] for name, m in models.items()}
    times: dict[str, list[int]] = {v[0]: [] for v in VARIANTS}
    cpu_times: dict[str, list[int]] = {v[0]: [] for v in VARIANTS}
    statements: dict[str, int] = {}
    clock = time.perf_counter_ns
    cpu = time.process_time_ns
    cpu_out: list[int] = []

    def sync_block(model: Any, ids: list[Any], changed: bool, out: list[int]) -> None:
        for i in range(block):
            obj = model.objects.get(pk=ids[i % len(ids)])
            if changed:
                obj.amount += 1
                obj.note = f"n{i}"
            c0, t0 = cpu(), clock()
            obj.save()
            out.append(clock() - t0)
            cpu_out.append(cpu() - c0)

    def atomic_block(model: Any, ids: list[Any], changed: bool, out: list[int]) -> None:
        for i in range(block):
            obj = model.objects.get(pk=ids[i % len(ids)])
            if changed:
                obj.amount += 1
                obj.note = f"n{i}"
            c0, t0 = cpu(), clock()
            with transaction.atomic():
                obj.save()
            out.append(clock() - t0)
            cpu_out.append(cpu() - c0)

    async def async_block(model: Any, ids: list[Any], changed: bool, out: list[int]) -> None:
        for i in range(block):
            obj = await model.objects.aget(pk=ids[i % len(ids)])
            if changed:
                obj.amount += 1
                obj.note = f"n{i}"
            c0, t0 = cpu(), clock()
            await obj.asave()
            out.append(clock() - t0)
            cpu_out.append(cpu() - c0)

    def one(model: Any, ids: list[Any], changed: bool, mode: str, out: list[int]) -> None:
        if mode == "async":
            # Thread-sensitive code runs back in this thread, on its connection.
            async_to_sync(async_block)(model, ids, changed, out)
        elif mode == "atomic":
            atomic_block(model, ids, changed, out)
        else:
            sync_block(model, ids, changed, out)

    for label, name, changed, mode, _base in VARIANTS:  # warm up, count statements
        model = models[name]
        one(model, pks[name], changed, mode, [])
        with CaptureQueriesContext(connection) as ctx:
            saved = block
            one(model, pks[name][:1], changed, mode, [])
        gets = saved  # one get per save
        sent = [q for q in ctx.captured_queries if not q["sql"].startswith(CONTROL)]
        statements[label] = (len(sent) - gets) // saved

    order = list(VARIANTS) * rounds
    random.seed(7)
    random.shuffle(order)
    for label, name, changed, mode, _base in order:
        cpu_out = cpu_times[label]
        one(models[name], pks[name], changed, mode, times[label])

    medians = {label: statistics.median(values) for label, values in times.items()}
    cpu_medians = {label: statistics.median(values) for label, values in cpu_times.items()}
    result = {
        "db": db,
        "vendor": connection.vendor,
        "saves": len(times["plain model"]),
        "rows": [
            {
                "label": label,
                "median_us": medians[label] / 1000,
                "ratio": medians[label] / medians[base] if base else None,
                "cpu_us": cpu_medians[label] / 1000,
                "cpu_ratio": cpu_medians[label] / cpu_medians[base] if base else None,
                "statements": statements[label],
            }
            for label, _name, _changed, _mode, base in VARIANTS
        ],
    }
    trigger = medians["TriggerVersionField"] / medians["plain model + the same trigger"]
    result["trigger_vs_plain_trigger"] = trigger
    return result


def print_tables(results: list[dict[str, Any]]) -> None:
    """Print one table (a row per variant, a column per database), then the same in client CPU time."""
    width = 36
    for title, time_key, ratio_key in (
        ("save (ratio to plain, statements)", "median_us", "ratio"),
        ("client CPU time per save (ratio)", "cpu_us", "cpu_ratio"),
    ):
        head = f"{title:<{width}}" + "".join(f"{r['db']:>16}" for r in results)
        print()
        print(head)
        print("-" * len(head))
        for index, (label, *_rest) in enumerate(VARIANTS):
            cells = []
            for result in results:
                row = result["rows"][index]
                if row[ratio_key] is None:
                    cells.append(f"{row[time_key]:>9.0f}µs ({row['statements']})")
                else:
                    cells.append(f"{row[ratio_key]:>10.3f}× ({row['statements']})")
            print(f"{label:<{width}}" + "".join(f"{c:>16}" for c in cells))
        if ratio_key == "ratio":
            label = "TriggerVersionField / plain+trigger"
            print(f"{label:<{width}}" + "".join(f"{r['trigger_vs_plain_trigger']:>15.3f}×" for r in results))
    counts = ", ".join(f"{r['db']}: {r['saves']}" for r in results)
    print(f"({counts} saves per variant)")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--db", default="all", choices=[*_setup.DATABASES, "all"])
    parser.add_argument("--rounds", type=int, default=120)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    if args.db != "all":
        result = run(args.db, args.rounds, args.block)
        if args.json:
            print(json.dumps(result))
        else:
            print_tables([result])
        return
    results = []
    for db in DBS:
        cmd = [sys.executable, __file__, "--db", db, "--rounds", str(args.rounds), "--block", str(args.block)]
        out = subprocess.run([*cmd, "--json"], check=True, stdout=subprocess.PIPE, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print_tables(results)


if __name__ == "__main__":
    main()
