#!/usr/bin/env python
"""Save and load costs of TriggerVersionField and ConditionalVersionField against a plain model.

    python bench/fields.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

Save: get + modify + save, interleaved in shuffled blocks; median save time as
a ratio to the identical unversioned model, and SQL statements per save.
"Conditional, unchanged" saves the values the row already holds.
Load: list() of 10,000 rows, models interleaved; median time as a ratio to the
plain model (the issue's limit for ConditionalVersionField is 1.15).
Run with the project's virtualenv (python3 dev.py bench bench/fields.py).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import subprocess
import sys
import time

import _setup

LOAD_ROWS = 10_000


def run(db: str, rounds: int, block: int, load_rounds: int) -> None:
    _setup.setup(db, ["fieldsapp"])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from fieldsapp.models import AutoInc, Conditional, Plain, Trigger

    from concurrency.triggers import factory

    models = [Plain, AutoInc, Trigger, Conditional]
    _setup.create_tables(*models)
    factory(connection).create(Trigger._meta.get_field("version"))
    rows = 50
    pks = {m: [m.objects.create(name=f"row{i}").pk for i in range(rows)] for m in models}
    variants = [(m, True) for m in models] + [(Conditional, False)]
    labels = {
        (Plain, True): "plain model",
        (AutoInc, True): "AutoIncVersionField",
        (Trigger, True): "TriggerVersionField",
        (Conditional, True): "ConditionalVersionField, changed",
        (Conditional, False): "ConditionalVersionField, unchanged",
    }
    saves: dict[tuple[type, bool], list[float]] = {v: [] for v in variants}
    statements: dict[tuple[type, bool], int] = {}
    clock = time.perf_counter_ns

    for model, change in variants:  # warm up and count statements
        obj = model.objects.get(pk=pks[model][0])
        if change:
            obj.amount += 1
        with CaptureQueriesContext(connection) as ctx:
            obj.save()
        statements[(model, change)] = len(ctx.captured_queries)

    order = variants * rounds
    random.seed(7)
    random.shuffle(order)
    for model, change in order:
        ids = pks[model]
        for i in range(block):
            obj = model.objects.get(pk=ids[i % rows])
            if change:
                obj.amount += 1
                obj.note = f"n{i}"
            t0 = clock()
            obj.save()
            saves[(model, change)].append(clock() - t0)

    base = statistics.median(saves[(Plain, True)])
    print(f"\n{db}  ({connection.vendor}; save: {len(saves[(Plain, True)])} saves per variant)")
    print(f"{'save':<36} {'median':>10} {'ratio':>7} {'stmts/save':>11}")
    for variant in variants:
        med = statistics.median(saves[variant])
        print(f"{labels[variant]:<36} {med / 1000:>8.1f}µs {med / base:>7.3f} {statements[variant]:>11}")

    for model in (Plain, Trigger, Conditional):
        model.objects.bulk_create(
            model(name=f"bulk{i}", amount=i, note="x" * 20) for i in range(LOAD_ROWS - rows)
        )
    loads: dict[type, list[float]] = {m: [] for m in (Plain, Trigger, Conditional)}
    ratios: dict[type, list[float]] = {m: [] for m in loads}
    trio = list(loads)
    for round_ in range(load_rounds):
        # Back-to-back in a rotating order, so each round's ratio compares
        # runs made under the same machine load.
        timed: dict[type, float] = {}
        for model in trio[round_ % 3 :] + trio[: round_ % 3]:
            # Collections triggered by earlier rounds' garbage would land on
            # whichever model happens to run next.
            gc.collect()
            gc.disable()
            t0 = clock()
            loaded = list(model.objects.all())
            timed[model] = clock() - t0
            gc.enable()
            assert len(loaded) == LOAD_ROWS
            del loaded
        for model in trio:
            loads[model].append(timed[model])
            ratios[model].append(timed[model] / timed[Plain])
    print(f"{'load ' + str(LOAD_ROWS) + ' rows':<36} {'median':>10} {'ratio':>7}  (median of round ratios)")
    for model in trio:
        med = statistics.median(loads[model])
        name = {Plain: "plain model", Trigger: "TriggerVersionField", Conditional: "ConditionalVersionField"}
        print(f"{name[model]:<36} {med / 1e6:>8.1f}ms {statistics.median(ratios[model]):>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="all")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--load-rounds", type=int, default=15)
    args = parser.parse_args()
    if args.db == "all":
        for db in ("sqlite-mem", "sqlite", "postgresql", "mariadb"):
            cmd = [sys.executable, __file__, "--db", db]
            cmd += ["--rounds", str(args.rounds), "--block", str(args.block)]
            cmd += ["--load-rounds", str(args.load_rounds)]
            subprocess.run(cmd, check=True)
        return
    run(args.db, args.rounds, args.block, args.load_rounds)


if __name__ == "__main__":
    main()
