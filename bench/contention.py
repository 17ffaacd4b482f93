"""Contention benchmark: many processes incrementing the same rows.

Each worker process has its own database connection; they stand for separate
application servers. Every worker does K read-modify-write increments, either
of one row or of a small hot set of rows (4, or ``--hot-rows``), in six ways:

    optimistic   versioned model; on RecordModifiedError re-read and re-apply
                 at once (one concurrency.transaction.atomic() per attempt)
    retry_on_conflict
                 the same through concurrency.retry.retry_on_conflict(delay=2 ms,
                 max_delay=32 ms): a random pause of 0..2 ms x 2^(conflicts - 1)
                 before each retry ("full jitter")
    lock_on_retry
                 retry_on_conflict(lock_on_retry=True): no pause; the attempt after
                 a conflict first locks the refused row (SELECT ... FOR UPDATE,
                 refreshing it), then re-reads and saves; a call with the same
                 arguments within a second of a conflict locks the row first
    locked()     the same, the function reading the row through
                 concurrency.retry.locked(Counter.objects): in a call that locks,
                 its own read is the SELECT ... FOR UPDATE
    pessimistic  plain model; SELECT ... FOR UPDATE, then save (one atomic())
    F()          plain model; UPDATE ... SET value = value + 1 (the floor: no read)
    unversioned  plain model; read, add one, save: the bug this library fixes

and the table shows lost updates (expected total minus the final total),
conflicts, retries after the database refused a transaction (busy: SQLite's
"database is locked"; on Galera a certification failure, error 1213, of the
modes that do not use the library), saves per second and
the ratio to ``select_for_update()`` measured in the same run (modes
interleaved, medians over rounds).

    python bench/contention.py                        # postgresql, mariadb, sqlite; 4 x 200
    python bench/contention.py -p 8 -k 1000 --rounds 1
    python bench/contention.py --db postgresql --rounds 5
    python bench/contention.py --db galera --db postgresql-replica --db pgbouncer
    python bench/contention.py --insn --db postgresql --db mariadb

``--insn`` counts instead the client instructions of one increment in one
process (``valgrind --tool=callgrind``, each mode's loop counted alone through
``sys.call_tracing()``): ``select_for_update()`` against a hot call of the
``lock_on_retry`` and ``locked()`` functions (one refused a moment ago, so its
first attempt locks), with the statements each sends. Steady where the rates
of a shared machine are not.

The cluster setups need ``python3 dev.py cluster up``. On ``galera`` worker n
connects to node n % 3 + 1 (multi-primary: every node takes writes); on
``postgresql-replica`` reads outside a transaction go to the hot standby
(tests/support/routers.py) and every commit waits until the standby applied it; on
``pgbouncer`` every connection goes through PgBouncer in transaction pooling.

The tables live in a database of their own, ``concurrency_bench_contention_<pid>``
(created and dropped here), never in the test databases.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# One database per run (per database process), so runs started at once do not collide.
BENCH_DB = f"concurrency_bench_contention_{os.getpid()}"
MODES = ("optimistic", "retry_on_conflict", "lock_on_retry", "locked()", "pessimistic", "F()", "unversioned")
WORKLOADS = ("one row", "hot set")
HOT_ROWS = 4


def setup_django(db: str) -> None:
    """Configure Django on the demo project, pointed at the bench database."""
    os.environ["CONCURRENCY_DB"] = db
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, str(ROOT))
    from tests import settings as test_settings

    # Every alias: default and other, and a cluster's other nodes or its replica.
    for entry in test_settings.DATABASES.values():
        entry["NAME"] = str(Path(test_settings._tmp) / f"{BENCH_DB}.sqlite3") if db == "sqlite" else BENCH_DB
        entry.get("TEST", {}).pop("MIRROR", None)
    import django

    django.setup()


def create_database(db: str) -> None:
    """Create the bench database and the two counter tables in it."""
    from django.db import connection

    from tests.demo.models import Counter, PlainCounter

    if db == "sqlite":
        Path(connection.settings_dict["NAME"]).unlink(missing_ok=True)
    else:
        drop_database(db)
        with connection._nodb_cursor() as cursor:
            extra = " CHARACTER SET utf8mb4" if connection.vendor == "mysql" else ""
            cursor.execute(f"CREATE DATABASE {BENCH_DB}{extra}")
    with connection.schema_editor() as editor:
        editor.create_model(Counter)
        editor.create_model(PlainCounter)
    connection.close()


def drop_database(db: str) -> None:
    from django.db import connection, connections

    connections.close_all()
    if db == "sqlite":
        Path(connection.settings_dict["NAME"]).unlink(missing_ok=True)
        return
    if db == "pgbouncer":
        from tests.support import cluster

        cluster.pgbouncer_release(BENCH_DB)
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")


@dataclass
class Outcome:
    db: str
    workload: str
    mode: str
    procs: int
    increments: int
    lost: int
    conflicts: int
    seconds: float
    queries: int
    busy: int = 0

    @property
    def rate(self) -> float:
        return self.procs * self.increments / self.seconds

    @property
    def queries_per_increment(self) -> float:
        return self.queries / (self.procs * self.increments)


def worker(
    mode: str,
    index: int,
    pks: list[int],
    increments: int,
    seed: int,
    barrier: Any,
    results: Any,
) -> None:
    """Do ``increments`` increments; report (start, end, conflicts, queries)."""
    from django.conf import settings
    from django.db import OperationalError, connection, transaction
    from django.db.models import F

    from concurrency.exceptions import RecordModifiedError
    from concurrency.retry import retry_on_conflict
    from concurrency.signals import conflict_detected
    from concurrency.transaction import atomic, is_write_conflict
    from tests.demo.models import Counter, PlainCounter

    if settings.DB == "galera":
        from tests.support import cluster

        connection.settings_dict["PORT"] = str(cluster.GALERA_PORTS[index % 3 + 1])

    queries = 0

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    rng = random.Random(seed)
    conflicts = 0
    busy = 0
    connection.ensure_connection()
    barrier.wait()
    start = time.perf_counter()

    @retry_on_conflict(attempts=10_000, delay=0.002, max_delay=0.032)
    def increment_with_backoff(pk: int) -> None:
        row = Counter.objects.get(pk=pk)
        row.value += 1
        row.save()

    def count_conflict(**kwargs: Any) -> None:
        nonlocal conflicts
        conflicts += 1

    @retry_on_conflict(attempts=10_000, lock_on_retry=True)
    def increment_locking_on_retry(pk: int) -> None:
        row = Counter.objects.get(pk=pk)
        row.value += 1
        row.save()

    @retry_on_conflict(attempts=10_000, lock_on_retry=True)
    def increment_reading_locked(pk: int) -> None:
        from concurrency.retry import locked  # this mode only: older releases have no locked()

        row = locked(Counter.objects).get(pk=pk)
        row.value += 1
        row.save()

    if mode in ("retry_on_conflict", "lock_on_retry", "locked()"):
        conflict_detected.connect(count_conflict, weak=False)

    def increment(pk: int) -> None:
        nonlocal conflicts
        if mode == "optimistic":
            while True:
                try:
                    with atomic():
                        row = Counter.objects.get(pk=pk)
                        row.value += 1
                        row.save()
                    return
                except RecordModifiedError:
                    conflicts += 1
        elif mode == "retry_on_conflict":
            increment_with_backoff(pk)
        elif mode == "lock_on_retry":
            increment_locking_on_retry(pk)
        elif mode == "locked()":
            increment_reading_locked(pk)
        elif mode == "pessimistic":
            with transaction.atomic():
                plain = PlainCounter.objects.select_for_update().get(pk=pk)
                plain.value += 1
                plain.save()
        elif mode == "F()":
            PlainCounter.objects.filter(pk=pk).update(value=F("value") + 1)
        else:
            plain = PlainCounter.objects.get(pk=pk)
            plain.value += 1
            plain.save()

    with connection.execute_wrapper(count):
        for _ in range(increments):
            pk = rng.choice(pks)
            while True:
                try:
                    increment(pk)
                    break
                except OperationalError as error:
                    # SQLite's busy timeout ran out ("database is locked"), or Galera
                    # refused the transaction at certification (1213): nothing was
                    # written, so the increment is simply tried again.
                    if connection.vendor != "sqlite" and not is_write_conflict(error):
                        raise
                    busy += 1
    end = time.perf_counter()
    connection.close()
    results.put((start, end, conflicts, queries, busy))


def run_one(
    db: str, workload: str, mode: str, procs: int, increments: int, ctx: Any, hot_rows: int = HOT_ROWS
) -> Outcome:
    """Reset the rows, run ``procs`` workers, and check the totals."""
    from django.db import connection, connections

    from tests.demo.models import Counter, PlainCounter

    model = (
        Counter if mode in ("optimistic", "retry_on_conflict", "lock_on_retry", "locked()") else PlainCounter
    )
    model.objects.all().delete()
    count = 1 if workload == "one row" else hot_rows
    pks = [model.objects.create(name=f"row{i}").pk for i in range(count)]
    # Forked children must not share the parent's socket.
    connections.close_all()
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    children = [
        ctx.Process(target=worker, args=(mode, n, pks, increments, 1000 + n, barrier, results))
        for n in range(procs)
    ]
    for child in children:
        child.start()
    reports = []
    while len(reports) < procs:
        try:
            reports.append(results.get(timeout=1))
        except queue.Empty:
            dead = [c.exitcode for c in children if c.exitcode]
            if dead:
                for child in children:
                    child.kill()
                raise RuntimeError(f"{mode} worker exited with {dead[0]}") from None
    for child in children:
        child.join()
        if child.exitcode:
            raise RuntimeError(f"{mode} worker exited with {child.exitcode}")
    total = sum(model.objects.using("default").filter(pk__in=pks).values_list("value", flat=True))
    connection.close()
    return Outcome(
        db=db,
        workload=workload,
        mode=mode,
        procs=procs,
        increments=increments,
        lost=procs * increments - total,
        conflicts=sum(r[2] for r in reports),
        seconds=max(r[1] for r in reports) - min(r[0] for r in reports),
        queries=sum(r[3] for r in reports),
        busy=sum(r[4] for r in reports),
    )


def bench_database(
    db: str,
    procs: int,
    increments: int,
    rounds: int,
    keep: bool,
    hot_rows: int = HOT_ROWS,
    modes: tuple[str, ...] = MODES,
    workloads: tuple[str, ...] = WORKLOADS,
) -> list[Outcome]:
    setup_django(db)
    create_database(db)
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    try:
        for round_no in range(rounds):
            # Interleave: each round runs the modes in a rotated order.
            order = modes[round_no % len(modes) :] + modes[: round_no % len(modes)]
            for workload in workloads:
                for mode in order:
                    outcomes.append(run_one(db, workload, mode, procs, increments, ctx, hot_rows))
    finally:
        if not keep:
            drop_database(db)
    return outcomes


def summarize(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Median per (db, workload, mode); worst case for lost updates."""
    rows = []
    keys = sorted(
        {(o.db, o.workload, o.mode) for o in outcomes},
        key=lambda k: (k[0], WORKLOADS.index(k[1]), MODES.index(k[2])),
    )
    for key in keys:
        group = [o for o in outcomes if (o.db, o.workload, o.mode) == key]
        rows.append(
            {
                "db": key[0],
                "workload": key[1],
                "mode": key[2],
                "procs": group[0].procs,
                "increments": group[0].increments,
                "runs": len(group),
                "lost": max(o.lost for o in group),
                "conflicts": int(statistics.median(o.conflicts for o in group)),
                "busy": int(statistics.median(o.busy for o in group)),
                "rate": statistics.median(o.rate for o in group),
                "queries": statistics.median(o.queries_per_increment for o in group),
            }
        )
    for row in rows:
        pessimistic = next(
            r["rate"]
            for r in rows
            if (r["db"], r["workload"], r["mode"]) == (row["db"], row["workload"], "pessimistic")
        )
        row["ratio"] = row["rate"] / pessimistic
    return rows


def print_table(rows: list[dict[str, Any]], file: Any = None) -> None:
    header = (
        "database",
        "workload",
        "mode",
        "P x K",
        "lost",
        "conflicts",
        "busy",
        "saves/s",
        "vs s_f_u",
        "queries/inc",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["db"],
                r["workload"],
                r["mode"],
                f"{r['procs']} x {r['increments']}",
                str(r["lost"]),
                str(r["conflicts"]),
                str(r["busy"]),
                f"{r['rate']:.0f}",
                f"{r['ratio']:.2f}",
                f"{r['queries']:.2f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rule = "+".join("-" * (w + 2) for w in widths)
    for n, line in enumerate(lines):
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(), file=file)
        if n == 0:
            print(rule, file=file)
    print(
        f"\nMedians over {rows[0]['runs']} interleaved round(s); 'lost' is the worst round.\n",
        file=file,
        flush=True,
    )


INSN_MODES = ("pessimistic", "lock_on_retry", "locked()")


def insn_driver(db: str, loops: int) -> None:
    """Under callgrind: one hot increment per loop turn, each mode's loop inside sys.call_tracing()."""
    setup_django(db)
    create_database(db)
    from django.db import connection, transaction
    from django.db.models import F

    from concurrency.retry import hot, locked, retry_on_conflict
    from tests.demo.models import Counter, PlainCounter

    hot.HotRows.HOT_FOR = 1e9  # a refused call stays hot: valgrind is slow, the window would close
    pk = Counter.objects.create(name="hot").pk
    plain_pk = PlainCounter.objects.create(name="hot").pk
    behind = [True]

    def refused_once(pk: int) -> None:
        if behind.pop() if behind else False:
            # A write that commits between this attempt's read and its save: the call is refused once.
            Counter.objects.filter(pk=pk).update(version=F("version") + 1)

    @retry_on_conflict(attempts=3, lock_on_retry=True)
    def lock_on_retry(pk: int) -> None:
        row = Counter.objects.get(pk=pk)
        refused_once(pk)
        row.value += 1
        row.save()

    @retry_on_conflict(attempts=3, lock_on_retry=True)
    def reading_locked(pk: int) -> None:
        row = locked(Counter.objects).get(pk=pk)
        refused_once(pk)
        row.value += 1
        row.save()

    def pessimistic(pk: int) -> None:
        with transaction.atomic():
            row = PlainCounter.objects.select_for_update().get(pk=plain_pk)
            row.value += 1
            row.save()

    functions = {"pessimistic": pessimistic, "lock_on_retry": lock_on_retry, "locked()": reading_locked}
    statements = {}
    for mode in INSN_MODES:
        function = functions[mode]
        behind[:] = [True]
        function(pk)  # refused once: from now on its calls are hot
        for _ in range(3):
            function(pk)  # warm: the first calls compile and cache
        sent: list[str] = []

        def record(execute: Any, sql: str, *rest: Any, sent: list[str] = sent) -> Any:
            sent.append(sql)
            return execute(sql, *rest)

        with connection.execute_wrapper(record):
            function(pk)
        statements[mode] = [sql.split(None, 1)[0] for sql in sent]

        def loop(function: Any = function) -> None:
            for _ in range(loops):
                function(pk)

        sys.call_tracing(loop, ())
    connection.close()
    drop_database(db)
    print(json.dumps(statements))


def insn(db: str, loops: int) -> None:
    """Print client instructions per hot increment, as ratios to select_for_update()."""
    sys.path.insert(0, str(ROOT / "bench"))
    import _setup

    out, totals = _setup.callgrind(
        [sys.executable, __file__, "--insn-driver", db, "-k", str(loops)], cwd=ROOT
    )
    statements = json.loads(out.strip().splitlines()[-1])
    counts = {mode: total / loops for mode, total in zip(INSN_MODES, totals, strict=True)}
    print(f"\n{db}: client instructions per increment of one row ({loops} per mode, callgrind)")
    for mode in INSN_MODES:
        ratio = counts[mode] / counts["pessimistic"]
        label = "select_for_update()" if mode == "pessimistic" else f"hot call, {mode}"
        print(f"{label:<26} {counts[mode] / 1000:>7.0f}k  {ratio:.3f}x  {' + '.join(statements[mode])}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db",
        action="append",
        choices=["postgresql", "mariadb", "sqlite", "galera", "postgresql-replica", "pgbouncer"],
    )
    parser.add_argument("-p", "--procs", type=int, default=4)
    parser.add_argument("-k", "--increments", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hot-rows", type=int, default=HOT_ROWS, help="rows in the hot set (4)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--modes", help=f"comma-separated subset of {','.join(MODES)} (pessimistic is always run)"
    )
    parser.add_argument(
        "--workloads", help="one row, hot set, or both (default)", default=",".join(WORKLOADS)
    )
    parser.add_argument("--insn", action="store_true", help="count client instructions instead (callgrind)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--insn-driver", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.insn_driver:
        insn_driver(args.insn_driver, args.increments)
        return 0
    if args.insn:
        for db in args.db or ["postgresql", "mariadb"]:
            insn(db, args.increments)
        return 0

    if args.child:
        modes = (
            MODES
            if not args.modes
            else tuple(m for m in MODES if m in [*args.modes.split(","), "pessimistic"])
        )
        workloads = tuple(w for w in WORKLOADS if w in args.workloads.split(","))
        outcomes = bench_database(
            args.child, args.procs, args.increments, args.rounds, args.keep, args.hot_rows, modes, workloads
        )
        print(json.dumps([o.__dict__ for o in outcomes]))
        return 0

    # One interpreter per database: the Django settings are fixed per process.
    outcomes = []
    for db in args.db or ["postgresql", "mariadb", "sqlite"]:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"... {db}: {args.procs} processes x {args.increments} increments", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--child", db, "-p", str(args.procs), "-k", str(args.increments)]
        cmd += ["--rounds", str(args.rounds), "--hot-rows", str(args.hot_rows), "--workloads", args.workloads]
        cmd += ["--modes", args.modes] if args.modes else []
        cmd += ["--keep"] if args.keep else []
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
        found = [Outcome(**o) for o in json.loads(out.strip().splitlines()[-1])]
        print(
            f"load average before {load}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            file=sys.stderr,
        )
        print_table(summarize(found), file=sys.stderr)
        outcomes += found
    rows = summarize(outcomes)
    print_table(rows)
    failed = [r for r in rows if r["mode"] != "unversioned" and r["lost"]]
    if failed:
        print(f"FAIL: lost updates in {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
