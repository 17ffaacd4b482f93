#!/usr/bin/env python
"""Time the admin over 100 rows: ConcurrentModelAdmin against a plain ModelAdmin.

    python bench/admin.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

Both admins serve the demo's Article model in one process, through Django's
test client (the full middleware stack, sessions, messages). Per round, in
shuffled order:

* changelist GET with 100 list_editable rows (ours signs 100 versions);
* list_editable POST saving all 100 rows;
* an action over 100 selected rows that calls ``save()`` on each (``publish``);
* an action over 100 selected rows that runs one ``queryset.update()`` (``touch``),
  where the selection check is the largest share of the work.

The table gives median times, the ratio to plain Django, and the SQL
statements of one request of each kind.
"""

from __future__ import annotations

import argparse
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
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from tests.admin_forms import form_data
    from tests.demo.models import Article

    setup_test_environment()
    call_command("migrate", verbosity=0, interactive=False)
    urls = build_sites()
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    Article.objects.bulk_create(Article(title=f"Row {n:03d}", status="draft", version=1) for n in range(ROWS))

    kinds = ["changelist GET", "list_editable POST", "action: save() each", "action: one UPDATE"]
    times: dict[tuple[str, str], list[float]] = {(k, v): [] for k in kinds for v in urls}
    queries: dict[tuple[str, str], int] = {}
    clock = time.perf_counter_ns

    def measure(kind: str, variant: str, call: Any) -> Any:
        reset_queries()
        with CaptureQueriesContext(connection) as ctx:
            t0 = clock()
            response = call()
            t1 = clock()
        times[kind, variant].append(t1 - t0)
        queries[kind, variant] = len(ctx.captured_queries)
        return response

    def one_round(variant: str, n: int) -> None:
        url = urls[variant]
        page = measure("changelist GET", variant, lambda: client.get(url))
        assert page.status_code == 200
        html = page.content.decode()
        data = form_data(html, "changelist-form", _save="Save")
        for key in ("action", "select_across", "_selected_action"):
            data.pop(key, None)
        for index in range(ROWS):
            data[f"form-{index}-title"] = f"{variant} {n} {index}"
        response = measure("list_editable POST", variant, lambda: client.post(url, data))
        assert response.status_code == 302, response.content[:2000]
        selected = list(Article.objects.order_by("pk").values_list("pk", "version"))
        values = [f"{pk},{version}" if variant == "concurrent" else str(pk) for pk, version in selected]
        for kind, action in (("action: save() each", "publish"), ("action: one UPDATE", "touch")):
            post = {"action": action, "index": "0", "_selected_action": values}
            response = measure(kind, variant, lambda post=post: client.post(url, post))
            assert response.status_code == 302
            values = [
                f"{pk},{version}" if variant == "concurrent" else str(pk)
                for pk, version in Article.objects.order_by("pk").values_list("pk", "version")
            ]
        client.get(url)  # consume the messages

    for variant in urls:  # warm up
        one_round(variant, 0)
    for kind in kinds:
        for variant in urls:
            times[kind, variant].clear()
    order = list(urls) * rounds
    random.seed(11)
    random.shuffle(order)
    for n, variant in enumerate(order, 1):
        one_round(variant, n)

    print(f"\n{db}  ({rounds} rounds per admin, {ROWS} rows, {connection.vendor})")
    print(f"{'request':<22} {'plain ms':>9} {'ours ms':>9} {'ratio':>7} {'plain q':>8} {'ours q':>7} {'extra q':>8}")
    for kind in kinds:
        plain = statistics.median(times[kind, "plain"]) / 1e6
        ours = statistics.median(times[kind, "concurrent"]) / 1e6
        qp, qo = queries[kind, "plain"], queries[kind, "concurrent"]
        print(f"{kind:<22} {plain:>9.1f} {ours:>9.1f} {ours / plain:>7.3f} {qp:>8} {qo:>7} {qo - qp:>+8}")


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
