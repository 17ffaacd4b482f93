#!/usr/bin/env python
"""Time the admin over 100 rows: ConcurrentModelAdmin against a plain ModelAdmin.

    python bench/admin.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

Both admins serve the demo's Article model in one process, through Django's
test client (the full middleware stack, sessions, messages). Per round:

* changelist GET with 100 list_editable rows (ours signs 100 versions);
* list_editable POST saving all 100 rows (the form is read from a fresh GET);
* an action over 100 selected rows that calls ``save()`` on each (``publish``);
* an action over 100 selected rows that runs one ``queryset.update()`` (``touch``),
  where the selection check is the largest share of the work.

The two admins alternate request by request. The table gives median wall
times, their ratio, the median of the per-pair ratios, the ratio of median CPU
times of this process (steadiest on a busy machine), and the SQL statements of
one request of each kind.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import _setup

ROWS = 100
urlpatterns: list[Any] = []


def configure(db: str) -> None:
    _setup.setup(
        db,
        [
            "django.contrib.admin",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "tests.demo",
        ],
        ROOT_URLCONF="__main__",
        MIGRATION_MODULES={"auth": "tests.demo.auth_migrations"},
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        STATIC_URL="/static/",
        ALLOWED_HOSTS=["*"],
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )


def build_sites() -> dict[str, str]:
    """Register the two admins; return the changelist URL of each variant."""
    from django.contrib import admin
    from django.urls import path

    from concurrency.admin import ConcurrentModelAdmin
    from tests.demo.models import Article

    @admin.action(description="Publish (save each row)")
    def publish(modeladmin: Any, request: Any, queryset: Any) -> None:
        for article in queryset:
            article.status = "published" if article.status != "published" else "review"
            article.save()

    @admin.action(description="Touch (one UPDATE)")
    def touch(modeladmin: Any, request: Any, queryset: Any) -> None:
        queryset.update(body="touched")

    options = {
        "list_display": ["title", "status", "version"],
        "list_display_links": ["version"],
        "list_editable": ["title", "status"],
        "list_per_page": ROWS,
        "actions": [publish, touch],
    }
    urls = {}
    for name, base in (("plain", admin.ModelAdmin), ("concurrent", ConcurrentModelAdmin)):
        site = admin.AdminSite(name=name)
        site.register(Article, type(f"{name.title()}ArticleAdmin", (base,), dict(options)))
        urlpatterns.append(path(f"{name}/", site.urls))
        urls[name] = f"/{name}/demo/article/"
    return urls


def run(db: str, rounds: int) -> None:
    configure(db)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tests.demo.models import Article
    from tests.support.form_reader import form_data

    call_command("migrate", verbosity=0, interactive=False)
    urls = build_sites()
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    Article.objects.bulk_create(Article(title=f"Row {n:03d}", status="draft", version=1) for n in range(ROWS))

    kinds = ["changelist GET", "list_editable POST", "action: save() each", "action: one UPDATE"]
    times: dict[tuple[str, str], list[float]] = {(k, v): [] for k in kinds for v in urls}
    cpu: dict[tuple[str, str], list[float]] = {(k, v): [] for k in kinds for v in urls}
    queries: dict[tuple[str, str], int] = {}
    clock = time.perf_counter_ns
    # CPU time of this process: what the admin code costs, steady on a busy
    # machine (the database server's time is not in it; the queries are counted).
    cpu_clock = time.process_time_ns

    def measure(kind: str, variant: str, call: Any) -> Any:
        # A full collection now, not at a random point of some measured request.
        gc.collect()
        reset_queries()
        with CaptureQueriesContext(connection) as ctx:
            c0, t0 = cpu_clock(), clock()
            response = call()
            t1, c1 = clock(), cpu_clock()
        times[kind, variant].append(t1 - t0)
        cpu[kind, variant].append(c1 - c0)
        queries[kind, variant] = len(ctx.captured_queries)
        return response

    def fresh_selection(variant: str) -> list[str]:
        rows = Article.objects.order_by("pk").values_list("pk", "version")
        return [f"{pk},{version}" if variant == "concurrent" else str(pk) for pk, version in rows]

    def requests(variant: str, n: int) -> dict[str, Any]:
        """Return the four requests of one round, each prepared from the current rows."""
        url = urls[variant]

        def editable() -> Any:
            data = form_data(client.get(url).content, "changelist-form", _save="Save")
            for key in ("action", "select_across", "_selected_action"):
                data.pop(key, None)
            for index in range(ROWS):
                data[f"form-{index}-title"] = f"{variant} {n} {index}"
            return lambda: client.post(url, data)

        def action(name: str) -> Any:
            post = {"action": name, "index": "0", "_selected_action": fresh_selection(variant)}
            return lambda: client.post(url, post)

        return {
            # One unmeasured GET first: the measured one then starts from the same state.
            "changelist GET": lambda: (client.get(url), lambda: client.get(url))[1],
            "list_editable POST": editable,
            "action: save() each": lambda: action("publish"),
            "action: one UPDATE": lambda: action("touch"),
        }

    def one_round(n: int, record: bool) -> None:
        # The two admins alternate request by request, in random order, so
        # both see the same load on a shared machine.
        for kind in kinds:
            variants = list(urls)
            random.shuffle(variants)
            for variant in variants:
                call = requests(variant, n)[kind]()
                response = measure(kind, variant, call)
                assert response.status_code in (200, 302), (kind, variant, response.status_code)
                if kind != "changelist GET":
                    assert response.status_code == 302, (kind, variant)
                    client.get(urls[variant])  # show (and so consume) the messages
                if not record:
                    times[kind, variant].clear()
                    cpu[kind, variant].clear()

    random.seed(11)
    one_round(0, record=False)  # warm up
    for n in range(1, rounds + 1):
        one_round(n, record=True)

    print(f"\n{db}  ({rounds} rounds per admin, {ROWS} rows, {connection.vendor})")
    print(
        f"{'request':<22} {'plain ms':>9} {'ours ms':>9} {'wall':>6} {'paired':>7} {'cpu':>6} "
        f"{'plain q':>8} {'ours q':>7} {'extra':>6}"
    )
    for kind in kinds:
        plain = statistics.median(times[kind, "plain"]) / 1e6
        ours = statistics.median(times[kind, "concurrent"]) / 1e6
        pairs = statistics.median(
            o / p for o, p in zip(times[kind, "concurrent"], times[kind, "plain"], strict=True)
        )
        cpu_ratio = statistics.median(cpu[kind, "concurrent"]) / statistics.median(cpu[kind, "plain"])
        qp, qo = queries[kind, "plain"], queries[kind, "concurrent"]
        print(
            f"{kind:<22} {plain:>9.1f} {ours:>9.1f} {ours / plain:>6.3f} {pairs:>7.3f} {cpu_ratio:>6.3f} "
            f"{qp:>8} {qo:>7} {qo - qp:>+6}"
        )
    print("wall = ratio of medians; paired = median of per-pair ratios; cpu = ratio of median CPU times")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.db == "all":
        for db in ("sqlite-mem", "sqlite", "postgresql", "mariadb"):
            subprocess.run([sys.executable, __file__, "--db", db, "--rounds", str(args.rounds)], check=True)
        return
    run(args.db, args.rounds)


if __name__ == "__main__":
    main()
