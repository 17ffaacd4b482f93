"""Configure Django for a benchmark run against a dedicated database."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "src"), str(ROOT)]

# One database per run, so benchmarks started at the same time do not collide.
# Child processes inherit the name through the environment.
NAME = os.environ.setdefault("CONCURRENCY_BENCH_DB", f"concurrency_bench_{os.getpid()}")

DATABASES = {
    "sqlite-mem": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(tempfile.gettempdir()) / f"concurrency_bench_{os.getpid()}.sqlite3"),
    },
    "postgresql": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": NAME,
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    },
    "mariadb": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": NAME,
        "USER": "root",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": "3306",
    },
}


def setup(db: str, apps: list[str], **overrides: object) -> None:
    """Create the bench database (dropping an old one) and configure Django on it.

    ``overrides`` are further settings (middleware, templates, URLs for the admin bench).
    """
    import django
    from django.conf import settings

    config = dict(DATABASES[db])
    if db == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {NAME}")
            conn.execute(f"CREATE DATABASE {NAME}")
    elif db == "mariadb":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {NAME}")
        cur.execute(f"CREATE DATABASE {NAME} CHARACTER SET utf8mb4")
        conn.close()
    elif db == "sqlite" and os.path.exists(config["NAME"]):
        os.remove(config["NAME"])
    if db in ("postgresql", "mariadb"):
        atexit.register(_drop, db)
    settings.configure(
        DATABASES={"default": config},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "concurrency", *apps],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        SECRET_KEY="bench",
        **overrides,
    )
    django.setup()


def _drop(db: str) -> None:
    """Drop this run's database (registered by the process that created it)."""
    from django.db import connections

    connections.close_all()
    if db == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
    else:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {NAME}")
        conn.close()


def create_tables(*models: type) -> None:
    from django.db import connection

    with connection.schema_editor() as editor:
        for model in models:
            editor.create_model(model)


def cli(
    doc: str | None,
    run: Any,
    *,
    rounds: int,
    block: int,
    dbs: tuple[str, ...] = ("sqlite-mem", "sqlite", "postgresql", "mariadb"),
) -> None:
    """Parse ``--db/--rounds/--block`` and call ``run(db, rounds, block)``.

    ``--db all`` runs each database in a fresh interpreter: Django is
    configured once per process.
    """
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="all")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--block", type=int, default=block)
    args = parser.parse_args()
    if args.db != "all":
        run(args.db, args.rounds, args.block)
        return
    for db in dbs:
        cmd = [sys.argv[0], "--db", db, "--rounds", str(args.rounds), "--block", str(args.block)]
        subprocess.run([sys.executable, *cmd], check=True)


def callgrind(cmd: list[str], **run: Any) -> tuple[str, list[int]]:
    """Run ``cmd`` under ``valgrind --tool=callgrind``; return its output and the instructions
    of each ``sys.call_tracing()`` call it made, in order (the loops a driver counts alone)."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        counting = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg", "--collect-atstart=no"]
        counting += ["--toggle-collect=sys_call_tracing", "--dump-after=sys_call_tracing"]
        out = subprocess.run(
            counting + cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **run
        ).stdout
        dumps = sorted(Path(tmp).glob("cg.*"), key=lambda p: int(p.suffix[1:]))
        totals = []
        for dump in dumps:
            total = next(line for line in dump.read_text().splitlines() if line.startswith("totals:"))
            totals.append(int(total.split()[1]))
    return out, totals
