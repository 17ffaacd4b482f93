#!/usr/bin/env python
"""Time the "changed since you opened it" notice of the admin change form.

    python bench/live.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

The demo's Article under two ``ConcurrentModelAdmin`` sites in one process,
through Django's test client: one with the notice (the default), one with
``live_notice = False``. Measured, interleaved in shuffled order:

* the change form GET with and without the notice (ours adds a script tag);
* one check of the notice's script: ``If-None-Match`` with the current tag
  (304) and with an old one (200 and the JSON message, which reads the admin log),
  against the change form GET it spares.

The table gives median wall times, the ratio to the change form without the
notice, and the SQL statements of one request (session and user included).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import _setup
from admin import configure

urlpatterns: list[Any] = []


def run(db: str, rounds: int, block: int) -> None:
    configure(db)
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import path

    from concurrency.admin import ConcurrentModelAdmin
    from tests.demo.models import Article

    call_command("migrate", verbosity=0, interactive=False)
    for name, live in (("with", True), ("without", False)):
        site = admin.AdminSite(name=name)
        site.register(Article, type(f"{name}Admin", (ConcurrentModelAdmin,), {"live_notice": live}))
        urlpatterns.append(path(f"{name}/", site.urls))
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    article = Article.objects.create(title="Roadmap", body="text " * 200)
    old = Article.objects.get(pk=article.pk)
    article.save()
    from concurrency.http import make_etag

    current, stale = make_etag(article), make_etag(old)
    check = f"/with/demo/article/{article.pk}/version/"
    variants = {
        "change form, no notice": lambda: client.get(f"/without/demo/article/{article.pk}/change/"),
        "change form, notice": lambda: client.get(f"/with/demo/article/{article.pk}/change/"),
        "check: unchanged (304)": lambda: client.get(check, headers={"If-None-Match": current}),
        "check: changed (200)": lambda: client.get(
            check, {"since": "2000-01-01T00:00:00+00:00"}, headers={"If-None-Match": stale}
        ),
    }
    expected = {"change form, no notice": 200, "change form, notice": 200, "check: unchanged (304)": 304}
    statements = {}
    for name, call in variants.items():
        call()  # warm caches (content types, templates) before counting
        with CaptureQueriesContext(connection) as ctx:
            response = call()
        assert response.status_code == expected.get(name, 200), (name, response.status_code)
        statements[name] = len(ctx.captured_queries)
    times: dict[str, list[int]] = {name: [] for name in variants}
    order = list(variants) * rounds
    random.seed(5)
    random.shuffle(order)
    clock = time.perf_counter_ns
    for name in order:
        for _ in range(block):
            t0 = clock()
            variants[name]()
            times[name].append(clock() - t0)
    base = statistics.median(times["change form, no notice"])
    print(f"\n{db}  ({rounds * block} requests per variant, {connection.vendor})")
    print(f"{'request':<24} {'median':>9} {'ratio':>6} {'stmts':>6}")
    for name in variants:
        median = statistics.median(times[name])
        print(f"{name:<24} {median / 1000:>7.0f}µs {median / base:>6.2f} {statements[name]:>6}")


def main() -> None:
    _setup.cli(__doc__, run, rounds=20, block=5, dbs=("sqlite-mem", "postgresql", "mariadb"))


if __name__ == "__main__":
    main()
