#!/usr/bin/env python
"""Time an edit through a form: render the form, then bind, validate and save it.

    python bench/forms.py [--db sqlite-mem|sqlite|postgresql|mariadb|all] [--rounds N]

Variants, interleaved in shuffled blocks in one process:
a Django ModelForm of a plain model (the baseline), a Django ModelForm of a
versioned model (signed hidden version, checked save) and a ConcurrentForm
(plus the early stale check). The table gives median times as ratios to the
baseline and the SQL statements of one submit (is_valid + save).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import _setup


def run(db: str, rounds: int, block: int) -> None:
    _setup.setup(db, ["benchapp"])
    from benchapp.models import AutoInc, Plain
    from django import forms
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from concurrency.forms import ConcurrentForm

    _setup.create_tables(Plain, AutoInc)
    fields = ["name", "amount", "note"]
    variants: dict[str, tuple[type, Any]] = {
        "ModelForm, plain model": (Plain, forms.modelform_factory(Plain, fields=fields)),
        "ModelForm, versioned model": (
            AutoInc,
            forms.modelform_factory(AutoInc, fields=[*fields, "version"]),
        ),
        "ConcurrentForm": (
            AutoInc,
            forms.modelform_factory(AutoInc, form=ConcurrentForm, fields=[*fields, "version"]),
        ),
    }
    rows = 50
    pks = {
        name: [model.objects.create(name=f"row{i}").pk for i in range(rows)]
        for name, (model, _) in variants.items()
    }
    render: dict[str, list[float]] = {name: [] for name in variants}
    submit: dict[str, list[float]] = {name: [] for name in variants}
    statements: dict[str, int] = {}
    clock = time.perf_counter_ns

    def edit(name: str, pk: int, i: int) -> tuple[int, int]:
        model, form_class = variants[name]
        t0 = clock()
        obj = model.objects.get(pk=pk)
        form = form_class(instance=obj)
        form.as_div()
        data = {bf.html_name: bf.field.prepare_value(bf.value()) for bf in form}
        data.update(amount=str(i), note=f"n{i}")
        t1 = clock()
        bound = form_class(data, instance=model.objects.get(pk=pk))
        assert bound.is_valid(), bound.errors
        bound.save()
        t2 = clock()
        return t1 - t0, t2 - t1

    for name, (model, form_class) in variants.items():  # warm up and count statements
        obj = model.objects.get(pk=pks[name][0])
        data = {bf.html_name: bf.field.prepare_value(bf.value()) for bf in form_class(instance=obj)}
        data["note"] = "warm"
        bound = form_class(data, instance=model.objects.get(pk=obj.pk))
        with CaptureQueriesContext(connection) as ctx:
            assert bound.is_valid(), (name, bound.errors, data)
            bound.save()
        statements[name] = len(ctx.captured_queries)

    order = list(variants) * rounds
    random.seed(7)
    random.shuffle(order)
    for name in order:
        for i in range(block):
            r, s = edit(name, pks[name][i % rows], i)
            render[name].append(r)
            submit[name].append(s)

    base = "ModelForm, plain model"
    base_render, base_submit = statistics.median(render[base]), statistics.median(submit[base])
    print(f"\n{db}  ({len(submit[base])} edits per variant, {connection.vendor})")
    print(f"{'variant':<28} {'render':>9} {'ratio':>6} {'submit':>9} {'ratio':>6} {'stmts/submit':>13}")
    for name in variants:
        r, s = statistics.median(render[name]), statistics.median(submit[name])
        print(
            f"{name:<28} {r / 1000:>7.0f}µs {r / base_render:>6.2f} {s / 1000:>7.0f}µs "
            f"{s / base_submit:>6.2f} {statements[name]:>13}"
        )


def main() -> None:
    _setup.cli(__doc__, run, rounds=30, block=10, dbs=("sqlite-mem", "postgresql", "mariadb"))


if __name__ == "__main__":
    main()
