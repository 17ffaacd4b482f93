"""Settings of the test suite and of the demo site.

CONCURRENCY_DB selects the database: sqlite (default), postgresql or mariadb.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DB = os.environ.get("CONCURRENCY_DB", "sqlite")
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
    "reversion",
    "tests.demo",
    # Libraries tested beside ours (the "interop" dependency group, part of "test").
    "simple_history",
    "polymorphic",
    "import_export",
    "tests.interop",
]

# GuardedOrder combines django-fsm-2's ConcurrentTransitionMixin with a version
# field on purpose (tests/interop/test_fsm.py), which this check warns about.
SILENCED_SYSTEM_CHECKS = ["concurrency.W010"]

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
    if DB != "sqlite":
        raise RuntimeError(f"CONCURRENCY_DB={DB!r}: use sqlite, postgresql or mariadb")
    # Files, not memory, so that threads get connections of their own.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / f"{name}.sqlite3" if DEMO else _tmp / f"concurrency_{name}.sqlite3",
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        "TEST": {"NAME": str(_tmp / f"test_concurrency_{name}_{SUFFIX}.sqlite3")},
    }


DATABASES = {"default": _database("default"), "other": _database("other")}
if DEMO:
    # CONCURRENCY_DEMO_DB: another file, e.g. for `python3 dev.py screenshots`.
    DATABASES["default"]["NAME"] = os.environ.get("CONCURRENCY_DEMO_DB") or BASE_DIR / "demo.sqlite3"
