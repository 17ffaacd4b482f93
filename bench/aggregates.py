#!/usr/bin/env python
"""Time a 20-line inline save of the admin, with the lines versioned as part of their order and without.

    python bench/aggregates.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

The demo's ``OrderAdmin``-style ``ConcurrentModelAdmin`` with a tabular inline
of 20 lines, on ``Order``/``OrderLine`` (``ConcurrencyMeta.aggregate_root``)
and on the identical ``PlainOrder``/``PlainOrderLine`` (no declaration),
through Django's test client, alternating in shuffled order. Each save
changes the quantity of all 20 lines. The table gives the median time of the
POST, the ratio, and the SQL statements (and UPDATEs of the order table) of one save.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import _setup
from admin import configure

urlpatterns: list[Any] = []
LINES = 20


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
    from tests.demo.models import Order, OrderLine, PlainOrder, PlainOrderLine
    from tests.support.form_reader import form_data

    call_command("migrate", verbosity=0, interactive=False)
    site = admin.AdminSite(name="bench")
    for root, child in ((Order, OrderLine), (PlainOrder, PlainOrderLine)):
        inline = type(f"{child.__name__}Inline", (admin.TabularInline,), {"model": child, "extra": 0})
        site.register(root, type(f"{root.__name__}Admin", (ConcurrentModelAdmin,), {"inlines": [inline]}))
    urlpatterns.append(path("bench/", site.urls))
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    urls = {}
    for name, root, child in (("aggregate", Order, OrderLine), ("plain", PlainOrder, PlainOrderLine)):
        order = root.objects.create(customer=name)
        child.objects.bulk_create(child(order=order, product=f"p{n}") for n in range(LINES))
        urls[name] = f"/bench/demo/{root._meta.model_name}/{order.pk}/change/"
    table = connection.ops.quote_name(Order._meta.db_table)
    counter = [0]

    def prepare(name: str) -> Any:
        data = form_data(client.get(urls[name]).content, f"{urls[name].split('/')[3]}_form", _save="Save")
        counter[0] += 1
        for n in range(LINES):
            data[f"lines-{n}-quantity"] = str(counter[0])
        return lambda: client.post(urls[name], data)

    statements, root_updates = {}, {}
    for name in urls:
        prepare(name)()
        call = prepare(name)
        with CaptureQueriesContext(connection) as ctx:
            response = call()
        assert response.status_code == 302, (name, response.status_code)
        statements[name] = len(ctx.captured_queries)
        root_updates[name] = sum(
            1 for q in ctx.captured_queries if q["sql"].startswith("UPDATE") and table in q["sql"]
        )
    times: dict[str, list[int]] = {name: [] for name in urls}
    order = list(urls) * rounds
    random.seed(3)
    random.shuffle(order)
    clock = time.perf_counter_ns
    for name in order:
        for _ in range(block):
            call = prepare(name)
            t0 = clock()
            response = call()
            times[name].append(clock() - t0)
            assert response.status_code == 302
    base = statistics.median(times["plain"])
    print(f"\n{db}  ({rounds * block} saves of {LINES} inline lines per variant, {connection.vendor})")
    print(f"{'variant':<28} {'median':>9} {'ratio':>6} {'stmts':>6}")
    for name, label in (("plain", "without aggregate_root"), ("aggregate", "with aggregate_root")):
        median = statistics.median(times[name])
        print(f"{label:<28} {median / 1000:>7.0f}µs {median / base:>6.2f} {statements[name]:>6}")
    print(f"UPDATEs of the aggregate's order table per save: {root_updates['aggregate']}")
    _paths(rounds * block)


def _paths(repeat: int) -> None:
    """Child writes outside the admin, autocommit: statements and median time with and without the root."""
    from django.db import connection
    from django.db.models import F
    from django.test.utils import CaptureQueriesContext

    from tests.demo.models import Order, OrderLine, PlainOrder, PlainOrderLine

    variants = {"plain": (PlainOrder, PlainOrderLine), "aggregate": (Order, OrderLine)}
    orders = {name: root.objects.create(customer=f"paths {name}") for name, (root, _c) in variants.items()}

    def work(name: str) -> dict[str, Any]:
        root, child = variants[name]
        order = orders[name]
        line = child.objects.filter(order_id=order.pk).first() or child.objects.create(
            order_id=order.pk, product="x"
        )

        def save_unheld() -> None:
            row = child.objects.get(pk=line.pk)
            row.quantity += 1
            row.save()

        def save_held() -> None:
            row = child.objects.get(pk=line.pk)
            row.order = root.objects.get(pk=order.pk)
            row.quantity += 1
            row.save()

        def queryset_update() -> None:
            child.objects.filter(order_id=order.pk).update(quantity=F("quantity") + 1)

        def bulk_create() -> None:
            child.objects.bulk_create(child(order_id=order.pk, product="b") for _ in range(LINES))
            child.objects.filter(order_id=order.pk, product="b").delete()

        return {
            "save(), order not held": save_unheld,
            "save(), order held (+2 SELECTs)": save_held,
            "queryset update()": queryset_update,
            f"bulk_create({LINES}) + delete()": bulk_create,
        }

    plans = {name: work(name) for name in variants}
    print(f"\nchild writes in autocommit ({repeat} each; statements of one call)")
    print(f"{'path':<34} {'plain':>8} {'stmts':>6} {'aggregate':>10} {'stmts':>6} {'ratio':>6}")
    clock = time.perf_counter_ns
    for path in plans["plain"]:
        row = []
        for name in variants:
            call = plans[name][path]
            call()
            with CaptureQueriesContext(connection) as ctx:
                call()
            times = []
            for _ in range(repeat):
                t0 = clock()
                call()
                times.append(clock() - t0)
            row.append((statistics.median(times), len(ctx.captured_queries)))
        (base, n0), (agg, n1) = row
        print(f"{path:<34} {base / 1000:>6.0f}µs {n0:>6} {agg / 1000:>8.0f}µs {n1:>6} {agg / base:>6.2f}")


def main() -> None:
    _setup.cli(__doc__, run, rounds=10, block=3, dbs=("sqlite-mem", "postgresql", "mariadb"))


if __name__ == "__main__":
    main()
