"""Configure Django for a benchmark run against a dedicated database."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "src"), str(ROOT)]

DATABASES = {
    "sqlite-mem": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(tempfile.gettempdir()) / f"concurrency_bench_{os.getpid()}.sqlite3"),
    },
    "postgresql": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "concurrency_bench",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    },
    "mariadb": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "concurrency_bench",
        "USER": "root",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": "3306",
    },
}


def setup(db: str, apps: list[str]) -> None:
    """Create the bench database (dropping an old one) and configure Django on it."""
    import django
    from django.conf import settings

    config = dict(DATABASES[db])
    if db == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS concurrency_bench")
            conn.execute("CREATE DATABASE concurrency_bench")
    elif db == "mariadb":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", user="root", passwd="")
        cur = conn.cursor()
        cur.execute("DROP DATABASE IF EXISTS concurrency_bench")
        cur.execute("CREATE DATABASE concurrency_bench CHARACTER SET utf8mb4")
        conn.close()
    elif db == "sqlite" and os.path.exists(config["NAME"]):
        os.remove(config["NAME"])
    settings.configure(
        DATABASES={"default": config},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "concurrency", *apps],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        SECRET_KEY="bench",
    )
    django.setup()


def create_tables(*models: type) -> None:
    from django.db import connection

    with connection.schema_editor() as editor:
        for model in models:
            editor.create_model(model)
