#!/usr/bin/env python
"""Client instructions per save (callgrind), every save variant against plain Django in one process.

    python bench/instructions.py [--db sqlite-mem|postgresql|mariadb|all] [--saves N]

Wall time on a shared 2-core machine is noisy; instruction counts are not.
The script runs itself under ``valgrind --tool=callgrind``, which writes one
profile part per call of ``getppid()`` (the phase marker). Each variant runs
N get + modify cycles without saving, then N with the save: the difference
divided by N is the client's instructions per save (Django, the driver, and
this library; the database server is another process and not counted). The
first line per variant is the ratio to plain Django's save, outside and
inside ``atomic()``. Run with the project's virtualenv (python3 dev.py bench
bench/instructions.py --db all).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

DBS = ("sqlite-mem", "postgresql", "mariadb")
# (label, model name, changed, in atomic(), baseline label)
VARIANTS = [
    ("plain model", "Plain", True, False, None),
    ("AutoIncVersionField", "AutoInc", True, False, "plain model"),
    ("ConditionalVersionField, changed", "Conditional", True, False, "plain model"),
    ("ConditionalVersionField, unchanged", "Conditional", False, False, "plain model"),
    ("plain model, in atomic()", "Plain", True, True, None),
    ("Conditional, changed, in atomic()", "Conditional", True, True, "plain model, in atomic()"),
    ("Conditional, unchanged, in atomic()", "Conditional", False, True, "plain model, in atomic()"),
]


# Models whose loading is counted too: list() of LOAD_ROWS rows, per row.
LOADS = ("Plain", "Conditional")
LOAD_ROWS = 1000


def measure(db: str, saves: int) -> None:
    """Run the phases (under callgrind): a marker before each, nothing printed."""
    import _setup

    _setup.setup(db, ["benchapp"])
    import benchapp.models
    from django.db import transaction

    models = {name: getattr(benchapp.models, name) for name in {v[1] for v in VARIANTS}}
    _setup.create_tables(*models.values())
    pks = {name: [m.objects.create(name=f"row{i}").pk for i in range(10)] for name, m in models.items()}

    def cycles(name: str, changed: bool, atomic: bool, save: bool, count: int) -> None:
        model, ids = models[name], pks[name]
        for i in range(count):
            obj = model.objects.get(pk=ids[i % len(ids)])
            if changed:
                obj.amount += 1
                obj.note = f"n{i}"
            if not save:
                continue
            if atomic:
                with transaction.atomic():
                    obj.save()
            else:
                obj.save()

    for _label, name, changed, atomic, _base in VARIANTS:  # warm up every path
        cycles(name, changed, atomic, True, 20)
    for _label, name, changed, atomic, _base in VARIANTS:
        os.getppid()
        cycles(name, changed, atomic, False, saves)
        os.getppid()
        cycles(name, changed, atomic, True, saves)
    for name in LOADS:
        os.getppid()  # the end of the previous phase
        model = models[name]
        rows = (model(name=f"bulk{i}", amount=i, note="x" * 20) for i in range(LOAD_ROWS - 10))
        model.objects.bulk_create(rows)
        list(model.objects.all())
        os.getppid()
        assert len(list(model.objects.all())) == LOAD_ROWS
    os.getppid()


def run(db: str, saves: int) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix="concurrency-callgrind-")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--dump-before=getppid",
        f"--callgrind-out-file={out}/cg.out",
        sys.executable,
        __file__,
        "--measure",
        "--db",
        db,
        "--saves",
        str(saves),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = sorted(glob.glob(f"{out}/cg.out.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    totals = []
    for part in parts:
        with open(part) as f:
            totals.append(int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1)))  # type: ignore[union-attr]
    for part in glob.glob(f"{out}/*"):
        os.remove(part)
    os.rmdir(out)
    # Part 1 ends at the first marker; then (without save, with save) per variant.
    phases = totals[1 : 1 + 2 * len(VARIANTS)]
    per_save = {
        label: (phases[2 * i + 1] - phases[2 * i]) / saves for i, (label, *_rest) in enumerate(VARIANTS)
    }
    # After the saves: (insert the rows, load them) per model.
    loads = totals[1 + 2 * len(VARIANTS) :][1 : 2 * len(LOADS) : 2]
    per_row = {name: ir / LOAD_ROWS for name, ir in zip(LOADS, loads, strict=True)}
    return {"db": db, "per_save": per_save, "per_row": per_row}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--db", default="all")
    parser.add_argument("--saves", type=int, default=100)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.measure:
        measure(args.db, args.saves)
        return
    results = [run(db, args.saves) for db in (DBS if args.db == "all" else (args.db,))]
    head = f"{'client instructions per save':<38}" + "".join(f"{r['db']:>22}" for r in results)
    print(head)
    print("-" * len(head))
    for label, _name, _changed, _atomic, base in VARIANTS:
        cells = []
        for r in results:
            ir = r["per_save"][label]
            cells.append(f"{ir / 1000:>9.0f}k" + (f" ({ir / r['per_save'][base]:.3f}×)" if base else " " * 9))
        print(f"{label:<38}" + "".join(f"{c:>22}" for c in cells))
    for name in LOADS:
        cells = []
        for r in results:
            ir = r["per_row"][name]
            cells.append(f"{ir / 1000:>9.1f}k ({ir / r['per_row'][LOADS[0]]:.3f}×)")
        print(f"{'load, per row: ' + name:<38}" + "".join(f"{c:>22}" for c in cells))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
