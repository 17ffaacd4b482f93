#!/usr/bin/env python
"""The same workloads against this library and its peers, each in its own virtualenv.

    python3 bench/peers.py setup                 # create bench/.peers/<library>/ (from PyPI)
    python3 bench/peers.py run [--db all] [--rounds 3] [--insn]

Peers: django-concurrency 2.8.1 (which also imports as ``concurrency``, so it
cannot share a virtualenv with this project) and django-optimistic-lock 1.0.0
(``ool``). Each gets a virtualenv of its own under ``bench/.peers/`` (git-ignored;
their code is never committed) with the same Django as this project's
``.venv``; this project runs from ``.venv``. The same driver (this file, with
``--driver``) and the same models (``bench/peersapp``, versioned by whichever
library ``BENCH_PEER_LIB`` names) run in each, in a database of their own:

save
    get + change two fields + save() of one row, per library and field kind,
    against the identical unversioned model in the same process (shuffled
    blocks, medians): ratio to plain Django, statements per save().
bulk
    write 1,000 loaded rows with the library's checked write: this project's
    ``VersionedQuerySet.bulk_update()``; the peers have no checked bulk write
    (their ``bulk_update()`` is Django's, unchecked), so one ``save()`` per row
    in one ``atomic()``. Ratio to Django's ``bulk_update()`` of the plain model;
    statements per call.
contention
    4 processes x 200 read-modify-write increments of one row, each library's
    conflict retried at once (one ``atomic()`` per attempt; this project also
    with ``retry_on_conflict(lock_on_retry=True)``), against
    ``select_for_update()`` on the plain model, interleaved in the same run:
    ratio of increments per second, lost increments, statements per increment.
    SQLite runs on a file, every transaction ``IMMEDIATE`` (it takes the write
    lock when it starts, so there are no conflicts: writers queue).
--insn
    client instructions per save cycle under ``valgrind --tool=callgrind`` on
    PostgreSQL (the server's work is not in it): each kind's loop runs inside
    ``sys.call_tracing()``, which callgrind is told to count alone
    (``--toggle-collect``) and dump after (``--dump-after``). Repeatable to the
    instruction where wall time on a loaded 2-core machine is not.

Every figure is a ratio to plain Django measured in the same process (save,
bulk, insn) or the same run (contention).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / ".peers"
LIBS = {
    # label: (virtualenv, requirement); None: this project's .venv
    "ours": (None, None),
    "django-concurrency": (PEERS / "django-concurrency", "django-concurrency==2.8.1"),
    "django-optimistic-lock": (PEERS / "django-optimistic-lock", "django-optimistic-lock==1.0.0"),
}
DBS = ("sqlite-mem", "postgresql", "mariadb")
NAME = f"concurrency_bench_peers_{os.getpid()}"


def python_of(lib: str) -> Path:
    venv, _requirement = LIBS[lib]
    return (venv or ROOT / os.environ.get("CONCURRENCY_VENV", ".venv")) / "bin" / "python"


# --- setup: one virtualenv per peer ---------------------------------------------------------


def setup() -> None:
    """Create each peer's virtualenv with the Django and drivers of this project's .venv."""
    ours = python_of("ours")
    if not ours.exists():
        sys.exit("Run `python3 dev.py setup test mysql` first: this project's .venv gives the versions.")
    pins = subprocess.run(
        [ours, "-c", "import django, psycopg, MySQLdb; print(django.__version__, psycopg.__version__)"],
        check=True,
        text=True,
        capture_output=True,
    ).stdout.split()
    for lib, (venv, requirement) in LIBS.items():
        if venv is None:
            continue
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        wanted = [requirement, f"Django=={pins[0]}", f"psycopg[binary]=={pins[1]}", "mysqlclient"]
        print(f"... {lib}: {' '.join(wanted)}", file=sys.stderr, flush=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *wanted], check=True)


# --- the driver, run inside each library's virtualenv ---------------------------------------


def configure(db: str) -> None:
    import django
    from django.conf import settings

    config: dict[str, Any]
    if db == "sqlite-mem":
        config = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    elif db == "sqlite":
        path = Path(tempfile.gettempdir()) / f"{NAME}.sqlite3"
        path.unlink(missing_ok=True)
        # IMMEDIATE: a transaction takes the write lock when it starts, so writers queue
        # instead of failing to upgrade a read lock (as in the test settings).
        options = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
        config = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": options}
    elif db == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {NAME}")
            conn.execute(f"CREATE DATABASE {NAME}")
        config = {"ENGINE": "django.db.backends.postgresql", "NAME": NAME, "USER": "postgres"}
        config |= {"HOST": "127.0.0.1", "PORT": "5432"}
    else:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {NAME}")
        conn.cursor().execute(f"CREATE DATABASE {NAME} CHARACTER SET utf8mb4")
        conn.close()
        config = {"ENGINE": "django.db.backends.mysql", "NAME": NAME, "USER": "root", "PASSWORD": ""}
        config |= {"HOST": "127.0.0.1", "PORT": "3306"}
    apps = ["django.contrib.contenttypes", "django.contrib.auth", "peersapp"]
    if os.environ["BENCH_PEER_LIB"] in ("ours", "django-concurrency"):
        apps.insert(2, "concurrency")
    settings.configure(
        DATABASES={"default": config},
        INSTALLED_APPS=apps,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        SECRET_KEY="bench",
    )
    django.setup()
    from django.db import connection
    from peersapp.models import KINDS, Plain

    with connection.schema_editor() as editor:
        for model in [Plain, *KINDS.values()]:
            editor.create_model(model)


def drop(db: str) -> None:
    from django.db import connections

    connections.close_all()
    if db == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
    elif db == "mariadb":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {NAME}")
        conn.close()
    elif db == "sqlite":
        (Path(tempfile.gettempdir()) / f"{NAME}.sqlite3").unlink(missing_ok=True)


class Counter:
    """Count the statements sent on the default connection while active."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.n += 1
        return execute(sql, params, many, context)


def statements(work: Any) -> int:
    from django.db import connection

    counter = Counter()
    with connection.execute_wrapper(counter):
        work()
    return counter.n


def cycle(model: Any, pk: int, i: int) -> Any:
    row = model.objects.get(pk=pk)
    row.amount += 1
    row.note = f"n{i}"
    return row


def drive_save(rounds: int, block: int) -> list[dict[str, Any]]:
    from peersapp.models import KINDS, Plain

    models = {"plain Django": Plain, **KINDS}
    pks = {label: model.objects.create(name="a").pk for label, model in models.items()}
    times: dict[str, list[float]] = {label: [] for label in models}
    counter = 0
    for _round in range(rounds):
        order = list(models)
        random.shuffle(order)
        for label in order:
            model, pk = models[label], pks[label]
            start = time.perf_counter()
            for _ in range(block):
                counter += 1
                cycle(model, pk, counter).save()
            times[label].append((time.perf_counter() - start) / block)
    plain = statistics.median(times["plain Django"])
    out = []
    for label, model in models.items():
        row = cycle(model, pks[label], -1)
        out.append(
            {
                "kind": label,
                "ratio": statistics.median(times[label]) / plain,
                "ms": statistics.median(times[label]) * 1000,
                "statements": statements(row.save),
            }
        )
    return out


def drive_bulk(rounds: int, rows: int = 1000) -> list[dict[str, Any]]:
    from django.db import transaction
    from django.db.models import QuerySet
    from peersapp.models import KINDS, LIB, Plain

    models = {"plain Django": Plain, **KINDS}
    for model in models.values():
        model.objects.bulk_create([model(name=f"r{i}") for i in range(rows)])

    def write(label: str) -> Any:
        model = models[label]
        objs = list(model.objects.order_by("pk"))
        for obj in objs:
            obj.amount += 1
        if label == "plain Django":
            return lambda: QuerySet(model).bulk_update(objs, ["amount"])
        if LIB == "ours":
            from concurrency.managers import VersionedQuerySet

            return lambda: VersionedQuerySet(model).bulk_update(objs, ["amount"])

        def each() -> None:
            with transaction.atomic():
                for obj in objs:
                    obj.save()

        return each

    times: dict[str, list[float]] = {label: [] for label in models}
    for _round in range(rounds):
        order = list(models)
        random.shuffle(order)
        for label in order:
            work = write(label)  # loaded before the clock starts
            start = time.perf_counter()
            work()
            times[label].append(time.perf_counter() - start)
    plain = statistics.median(times["plain Django"])
    return [
        {
            "kind": label,
            "ratio": statistics.median(times[label]) / plain,
            "ms": statistics.median(times[label]) * 1000,
            "statements": statements(write(label)),
        }
        for label in models
    ]


def contention_worker(mode: str, pk: int, increments: int, barrier: Any, results: Any) -> None:
    from django.db import OperationalError, connection, transaction
    from peersapp.models import KINDS, LIB, Plain

    if LIB == "django-optimistic-lock":
        from ool import ConcurrentUpdate as Conflict
    else:
        from concurrency.exceptions import RecordModifiedError as Conflict
    counter = Counter()
    conflicts = 0
    model = KINDS.get(mode.split(" + ")[0])

    if mode.endswith("lock_on_retry"):
        from concurrency.retry import retry_on_conflict

        @retry_on_conflict(attempts=100_000, lock_on_retry=True)
        def locking() -> None:
            row = model.objects.get(pk=pk)  # type: ignore[union-attr]
            row.amount += 1
            row.save()

    def increment() -> None:
        nonlocal conflicts
        if mode == "select_for_update()":
            with transaction.atomic():
                plain = Plain.objects.select_for_update().get(pk=pk)
                plain.amount += 1
                plain.save()
        elif mode.endswith("lock_on_retry"):
            locking()
        else:
            while True:
                try:
                    with transaction.atomic():
                        row = model.objects.get(pk=pk)  # type: ignore[union-attr]
                        row.amount += 1
                        row.save()
                    return
                except Conflict:
                    conflicts += 1

    if mode.endswith("lock_on_retry"):
        from concurrency.signals import conflict_detected

        def count(**kwargs: Any) -> None:
            nonlocal conflicts
            conflicts += 1

        conflict_detected.connect(count, weak=False)
    connection.ensure_connection()
    barrier.wait()
    start = time.perf_counter()
    with connection.execute_wrapper(counter):
        for _ in range(increments):
            while True:
                try:
                    increment()
                    break
                except OperationalError:
                    if connection.vendor != "sqlite":  # "database is locked": nothing was written
                        raise
    end = time.perf_counter()
    connection.close()
    results.put((start, end, conflicts, counter.n))


def drive_contention(rounds: int, procs: int, increments: int) -> list[dict[str, Any]]:
    import multiprocessing

    from django.db import connections
    from peersapp.models import KINDS, LIB, Plain

    modes = ["select_for_update()"]
    for label in KINDS:
        modes.append(label)
        if LIB == "ours" and label == "IntegerVersionField":
            modes.append(f"{label} + lock_on_retry")
    ctx = multiprocessing.get_context("fork")
    outcomes: dict[str, list[tuple[float, int, int, int]]] = {mode: [] for mode in modes}
    for round_no in range(rounds):
        for mode in modes[round_no % len(modes) :] + modes[: round_no % len(modes)]:
            model = Plain if mode == "select_for_update()" else KINDS[mode.split(" + ")[0]]
            model.objects.all().delete()
            pk = model.objects.create(name="hot").pk
            connections.close_all()
            barrier, results = ctx.Barrier(procs), ctx.Queue()
            children = [
                ctx.Process(target=contention_worker, args=(mode, pk, increments, barrier, results))
                for _ in range(procs)
            ]
            for child in children:
                child.start()
            reports = [results.get(timeout=600) for _ in children]
            for child in children:
                child.join()
                if child.exitcode:
                    raise RuntimeError(f"{mode}: a worker exited with {child.exitcode}")
            total = model.objects.get(pk=pk).amount
            seconds = max(r[1] for r in reports) - min(r[0] for r in reports)
            outcomes[mode].append(
                (
                    procs * increments / seconds,
                    procs * increments - total,
                    sum(r[2] for r in reports),
                    sum(r[3] for r in reports),
                )
            )
    pessimistic = statistics.median(o[0] for o in outcomes["select_for_update()"])
    return [
        {
            "kind": mode,
            "ratio": statistics.median(o[0] for o in group) / pessimistic,
            "rate": statistics.median(o[0] for o in group),
            "lost": max(o[1] for o in group),
            "conflicts": int(statistics.median(o[2] for o in group)),
            "statements": statistics.median(o[3] for o in group) / (procs * increments),
        }
        for mode, group in outcomes.items()
    ]


def drive_insn(cycles: int) -> list[dict[str, Any]]:
    """Run each kind's save cycles inside sys.call_tracing(), which callgrind counts alone."""
    from peersapp.models import KINDS, Plain

    models = {"plain Django": Plain, **KINDS}
    out = []
    for label, model in models.items():
        pk = model.objects.create(name="a").pk

        def loop(model: Any = model, pk: int = pk) -> None:
            for i in range(cycles):
                cycle(model, pk, i).save()

        loop()  # warm: the first saves compile and cache
        sys.call_tracing(loop, ())
        out.append({"kind": label, "cycles": cycles})
    return out


def driver(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(BENCH))
    db = args.db
    configure(db)
    try:
        if args.workload == "save":
            result = drive_save(args.rounds * 5, args.block)
        elif args.workload == "bulk":
            result = drive_bulk(args.rounds * 3)
        elif args.workload == "contention":
            result = drive_contention(args.rounds, args.procs, args.increments)
        else:
            result = drive_insn(args.block)
    finally:
        drop(db)
    print(json.dumps(result))


# --- the run: every library, workload and database; one table ---------------------------------


def run_driver(lib: str, workload: str, db: str, args: argparse.Namespace, prefix: list[str] = ()) -> Any:
    python = python_of(lib)
    if not python.exists():
        sys.exit(f"{python} is missing: run `python3 bench/peers.py setup` first.")
    env = {**os.environ, "BENCH_PEER_LIB": lib, "PYTHONHASHSEED": "0"}
    cmd = [*prefix, str(python), __file__, "--driver", workload, "--db", db, "--rounds", str(args.rounds)]
    cmd += ["--block", str(args.block), "-p", str(args.procs), "-k", str(args.increments)]
    print(f"... {lib}: {workload} on {db}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env, cwd=BENCH).stdout
    return json.loads(out.strip().splitlines()[-1])


def insn(lib: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Client instructions per save cycle of each kind, from one callgrind dump per kind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg"
        prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no"]
        prefix += ["--toggle-collect=sys_call_tracing", "--dump-after=sys_call_tracing"]
        rows = run_driver(lib, "insn", "postgresql", args, prefix)
        dumps = sorted(Path(tmp).glob("cg.*"), key=lambda p: int(p.suffix[1:]))
        for row, dump in zip(rows, dumps, strict=True):
            total = next(line for line in dump.read_text().splitlines() if line.startswith("totals:"))
            row["insn"] = int(total.split()[1]) / row["cycles"]
    plain = rows[0]["insn"]
    for row in rows:
        row["ratio"] = row["insn"] / plain
    return rows


def table(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    text = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    text.append("+".join("-" * (w + 2) for w in widths))
    text += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(text)


def run(args: argparse.Namespace) -> int:
    dbs = DBS if args.db == "all" else (args.db,)
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for db in dbs:
        for workload in args.workloads:
            for lib in LIBS:
                results[(workload, db, lib)] = run_driver(
                    lib, workload, "sqlite" if workload == "contention" and db == "sqlite-mem" else db, args
                )
    insns = {lib: insn(lib, args) for lib in LIBS} if args.insn else {}

    def cell(workload: str, db: str, lib: str, kind: str) -> str:
        row = next((r for r in results.get((workload, db, lib), []) if r["kind"] == kind), None)
        if row is None:
            return ""
        if workload == "contention":
            return f"{row['ratio']:.2f}x ({row['statements']:.1f}; lost {row['lost']})"
        return f"{row['ratio']:.2f}x ({row['statements']})"

    lines = []
    for workload in args.workloads:
        for lib in LIBS:
            kinds = [r["kind"] for r in results[(workload, dbs[0], lib)]]
            for kind in kinds:
                if kind in ("plain Django", "select_for_update()") and lib != "ours":
                    continue
                label = "Django" if kind in ("plain Django", "select_for_update()") else lib
                lines.append((workload, label, kind, *(cell(workload, db, lib, kind) for db in dbs)))
    header = ("workload", "library", "field kind", *(d if d != "sqlite-mem" else "SQLite" for d in dbs))
    print(table(header, lines))
    print(
        "\nsave: get + change + save() of one row, ratio of median time to plain Django in the same"
        "\nprocess (statements per save()). bulk: 1,000 loaded rows written with the library's checked"
        "\nwrite (peers: save() per row in one atomic(); their bulk_update() is Django's, unchecked),"
        "\nratio to Django's bulk_update() (statements per call). contention: "
        f"{args.procs} processes x {args.increments}"
        "\nincrements of one row, conflicts retried at once, ratio of increments/s to select_for_update()"
        "\nin the same run (statements per increment; lost increments, worst round). SQLite: in memory,"
        "\nbut contention on a file, transactions IMMEDIATE."
    )
    if insns:
        lines = [
            (
                lib if r["kind"] != "plain Django" else "Django",
                r["kind"],
                f"{r['insn']:,.0f}",
                f"{r['ratio']:.3f}x",
            )
            for lib, rows in insns.items()
            for r in rows
            if lib == "ours" or r["kind"] != "plain Django"
        ]
        print()
        print(table(("library", "field kind", "instructions per save cycle", "ratio to plain"), lines))
        print("\nClient instructions (valgrind --tool=callgrind) of get + change + save() on PostgreSQL.")
    lost = [key for key, rows in results.items() if key[0] == "contention" for r in rows if r["lost"]]
    return 1 if lost else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", choices=["setup", "run"], default="run")
    parser.add_argument("--db", default="all", choices=["all", *DBS, "sqlite"])
    parser.add_argument(
        "--workload", dest="workloads", action="append", choices=["save", "bulk", "contention"]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=200, help="save cycles per block (and per --insn loop)")
    parser.add_argument("-p", "--procs", type=int, default=4)
    parser.add_argument("-k", "--increments", type=int, default=200)
    parser.add_argument("--insn", action="store_true", help="also count client instructions (callgrind)")
    parser.add_argument("--driver", choices=["save", "bulk", "contention", "insn"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        args.workload = args.driver
        driver(args)
        return 0
    if args.command == "setup":
        setup()
        return 0
    args.workloads = args.workloads or ["save", "bulk", "contention"]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
