"""Settings of the test suite and of the demo site.

CONCURRENCY_DB selects the database: sqlite (default), postgresql or mariadb; or,
after ``python3 dev.py cluster up`` (see tests/support/cluster.py), one of the clusters:

- ``galera``: three MariaDB Galera nodes; ``default`` and ``other`` on node 1,
  ``node2`` and ``node3`` the same test database through the other nodes.
- ``postgresql-replica``: writes to the primary, reads outside transactions from
  its hot standby (``replica``), through ``tests.support.routers.PrimaryReplicaRouter``.
- ``pgbouncer``: the primary through PgBouncer in transaction pooling mode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
DB = os.environ.get("CONCURRENCY_DB", "sqlite")
CLUSTERS = ("galera", "postgresql-replica", "pgbouncer")
# The Django backend vendor of each setting of CONCURRENCY_DB.
VENDOR = {"sqlite": "sqlite", "mariadb": "mysql", "mysql": "mysql", "galera": "mysql"}.get(DB, "postgresql")
DEMO = os.environ.get("CONCURRENCY_DEMO") == "1"

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "concurrency-tests-not-secret")
DEBUG = DEMO
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "concurrency",
    "tests.demo",
]
SILENCED_SYSTEM_CHECKS: list[str] = []
if VENDOR == "sqlite":
    # SimpleConcurrentModel.version has a db_comment on purpose (tests/fields/test_fields.py checks it
    # reaches PostgreSQL); SQLite has no column comments and says so on every migrate.
    SILENCED_SYSTEM_CHECKS.append("fields.W163")
if not DEMO:
    # Libraries tested beside ours (the "interop" dependency group, part of "test"; the demo,
    # installed with the "demo" group only, does without them).
    INSTALLED_APPS += ["reversion", "simple_history", "polymorphic", "import_export", "tests.interop"]
    # A project written for django-concurrency, with its migration (tests/system/test_migrating.py).
    INSTALLED_APPS += ["tests.switching"]
    # GuardedOrder combines django-fsm-2's ConcurrentTransitionMixin with a version
    # field on purpose (tests/interop/test_fsm.py), which this check warns about.
    SILENCED_SYSTEM_CHECKS.append("concurrency.W010")

# auth.Group gets a version column through a migration of ours (see
# docs/guide/external-models.rst and tests/demo/auth_migrations).
MIGRATION_MODULES = {"auth": "tests.demo.auth_migrations"}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
if DEMO:
    # The demo's plain HTML edit page (/plain/articles/<pk>/edit/) shows the 409 page.
    MIDDLEWARE.append("concurrency.middleware.ConcurrencyMiddleware")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_tmp = Path(tempfile.gettempdir())
# Test databases are named per test run, so that several checkouts (and CI)
# can run the suite against one server at once. Child processes inherit it.
SUFFIX = os.environ.setdefault("CONCURRENCY_TEST_SUFFIX", str(os.getpid()))


def _database(name: str) -> dict:
    if DB == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": f"concurrency_{name}",
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": f"test_concurrency_{name}_{SUFFIX}"},
        }
    if DB in ("mariadb", "mysql"):
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": f"concurrency_{name}",
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": f"test_concurrency_{name}_{SUFFIX}", "CHARSET": "utf8mb4"},
        }
    if DB in CLUSTERS:
        return _cluster_database(name)
    if DB != "sqlite":
        raise RuntimeError(
            f"CONCURRENCY_DB={DB!r}: use sqlite, postgresql or mariadb, or {', '.join(CLUSTERS)}"
        )
    # Files, not memory, so that threads get connections of their own.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / f"{name}.sqlite3" if DEMO else _tmp / f"concurrency_{name}.sqlite3",
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        "TEST": {"NAME": str(_tmp / f"test_concurrency_{name}_{SUFFIX}.sqlite3")},
    }


def _cluster_database(name: str, port: int | None = None) -> dict:
    from tests.support import cluster

    if DB == "galera":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": f"concurrency_{name}",
            "USER": cluster.GALERA_USER,
            "PASSWORD": cluster.GALERA_PASSWORD,
            "HOST": cluster.HOST,
            "PORT": str(port or cluster.GALERA_PORTS[1]),
            # Causal reads: a read on one node waits until the node has applied every
            # write the cluster committed before it (read-your-writes across nodes).
            "OPTIONS": {"charset": "utf8mb4", "init_command": "SET SESSION wsrep_sync_wait = 1"},
            "TEST": {"NAME": f"test_concurrency_{name}_{SUFFIX}", "CHARSET": "utf8mb4"},
        }
    entry: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": f"concurrency_{name}",
        "USER": "postgres",
        "HOST": cluster.HOST,
        "PORT": str(port or cluster.PRIMARY_PORT),
        "TEST": {"NAME": f"test_concurrency_{name}_{SUFFIX}"},
    }
    if DB == "pgbouncer":
        entry["PORT"] = str(cluster.PGBOUNCER_PORT)
        # Transaction pooling: a server-side cursor would outlive the transaction
        # that declared it (Django's documented setting for PgBouncer).
        entry["DISABLE_SERVER_SIDE_CURSORS"] = True
    elif port is None:
        # A commit returns once the standby has applied it, so a read from the replica
        # after a write sees it; tests that need a lagging replica pause its replay.
        entry["OPTIONS"] = {"options": "-c synchronous_commit=remote_apply"}
    return entry


DATABASES = {"default": _database("default"), "other": _database("other")}
if DB == "galera":
    from tests.support import cluster as _cluster

    for _node in (2, 3):
        DATABASES[f"node{_node}"] = _cluster_database("default", _cluster.GALERA_PORTS[_node])
        DATABASES[f"node{_node}"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["tests.support.routers.GaleraNodesRouter"]
if DB == "postgresql-replica":
    from tests.support import cluster as _cluster

    DATABASES["replica"] = _cluster_database("default", _cluster.STANDBY_PORT)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["tests.support.routers.PrimaryReplicaRouter"]
if DEMO:
    # CONCURRENCY_DEMO_DB: another file, e.g. for `python3 dev.py screenshots`.
    DATABASES["default"]["NAME"] = os.environ.get("CONCURRENCY_DEMO_DB") or BASE_DIR / "demo.sqlite3"
