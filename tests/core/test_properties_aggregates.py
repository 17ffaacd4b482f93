"""Property-based test of versioned aggregates over every write path.

Three users each hold an instance of one of two orders. Hypothesis interleaves
their loads with child writes through every Django write path (save, related
managers, ``bulk_create``, queryset ``update``/``delete``, ``bulk_update``
through the base manager, a move with ``add()``, nested roots, ``SET_NULL``
from deleting another parent), root saves, ``verify_unchanged``, transactions
of several such steps that commit or roll back, and a second thread entering
the same ``concurrency.transaction.atomic``-decorated function. A model says,
for every step:

* a write or check holding an order instance is accepted exactly when no other
  transaction changed the order or any of its children since the instance was
  loaded, and nothing in this transaction changed the order's own fields since
  (a refusal leaves the transaction usable: it wrote nothing);
* each order's version moves once per committed transaction that changed its
  aggregate (plus once per own save), and never otherwise;
* a user holding an order nobody changed since holds the row's version.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from concurrency.api import verify_unchanged
from concurrency.exceptions import RecordModifiedError
from concurrency.transaction import atomic as concurrency_atomic
from tests.demo.models import Order, OrderLine, Parcel, Shipment, Task, Worker

USERS = 3
ORDERS = 2
EXAMPLES = int(os.environ.get("CONCURRENCY_STATEFUL_EXAMPLES", "25"))
STEPS = int(os.environ.get("CONCURRENCY_STATEFUL_STEPS", "25"))
WAIT = 60

# Writes holding the user's order instance: checked.
HELD = ("save_root", "line_save", "related_create", "bulk_create", "add_move", "update_to", "delete_line")
# Those that are save() or delete() of an instance (a refusal leaves the transaction usable).
SAVES = ("save_root", "line_save", "related_create", "delete_line")
# Writes that name the order by its key only: unchecked.
UNHELD = (
    "qs_update",
    "base_bulk_update",
    "line_save_plain",
    "bulk_create_id",
    "qs_delete",
    "parcels",
    "set_null",
    "move_tasks",
)


class _RollBackError(Exception):
    """Raised inside a transaction to roll it back."""


@concurrency_atomic
def _in_transaction(work: Any) -> Any:
    """The one decorated function both threads call."""
    return work()


@dataclass
class User:
    order: int | None = None  # index of the order held
    instance: Order | None = None
    seen: int = 0  # committed changes of that order when loaded (or last written)
    fresh: bool = False  # holds the version this open transaction moved the order to


@dataclass
class Tx:
    touched: dict[int, str] = field(default_factory=dict)  # order -> "child" | "own"
    delta: dict[int, int] = field(default_factory=lambda: collections.defaultdict(int))
    lines: dict[int, int] = field(default_factory=dict)
    tasks: dict[int, int] = field(default_factory=dict)


class Aggregates(RuleBasedStateMachine):
    counts: collections.Counter[str]

    def __init__(self) -> None:
        super().__init__()
        for model in (Parcel, Shipment, Task, Worker, OrderLine, Order):
            model._base_manager.all().delete()
        self.orders = [Order.objects.create(customer=f"o{n}") for n in range(ORDERS)]
        self.pks = [o.pk for o in self.orders]
        for o in self.orders:
            OrderLine.objects.bulk_create([OrderLine(order_id=o.pk, product=p) for p in "ab"])
        shipment = Shipment.objects.create(order_id=self.pks[0])
        Parcel.objects.create(shipment=shipment)
        worker = Worker.objects.create(name="w")
        Task.objects.create(order_id=self.pks[1], worker=worker, title="t")
        self.version = [Order.objects.get(pk=pk).version for pk in self.pks]
        self.committed = [0] * ORDERS
        self.lines = [2] * ORDERS
        self.tasks = [0, 1]
        self.users = [User() for _ in range(USERS)]
        for index, user in enumerate(self.users):
            user.order = index % ORDERS
            user.instance = Order.objects.get(pk=self.pks[user.order])
        self.tx: Tx | None = None
        self.counts["examples"] += 1

    # -- the model ---------------------------------------------------------------------

    def _lines(self, o: int) -> int:
        if self.tx is not None and o in self.tx.lines:
            return self.tx.lines[o]
        return self.lines[o]

    def _set_lines(self, o: int, n: int) -> None:
        if self.tx is None:
            self.lines[o] = n
        else:
            self.tx.lines[o] = n

    def _tasks(self, o: int) -> int:
        if self.tx is not None and o in self.tx.tasks:
            return self.tx.tasks[o]
        return self.tasks[o]

    def _set_tasks(self, o: int, n: int) -> None:
        if self.tx is None:
            self.tasks[o] = n
        else:
            self.tx.tasks[o] = n

    def _acceptable(self, user: User) -> bool:
        assert user.order is not None
        o = user.order
        if self.tx is None or o not in self.tx.touched:
            return user.seen == self.committed[o]
        if self.tx.touched[o] == "child":
            return user.seen == self.committed[o] or user.fresh
        return user.fresh

    def _changed(self, o: int, own: bool = False, holder: User | None = None) -> None:
        """The aggregate of order ``o`` changed (``own``: its own row was saved)."""
        if self.tx is None:
            self.committed[o] += 1
            self.version[o] += 1
            if holder is not None:
                holder.seen = self.committed[o]
            return
        state = self.tx.touched.get(o)
        if own:
            self.tx.delta[o] += 1
            self.tx.touched[o] = "own"
            for other in self.users:
                if other.order == o:
                    other.fresh = False
        elif state is None:
            self.tx.delta[o] += 1
            self.tx.touched[o] = "child"
        if holder is not None:
            holder.fresh = True

    # -- the steps ---------------------------------------------------------------------

    def _held(self, op: str, user: User) -> bool:
        """Run ``op`` holding the user's order instance; return whether it wrote."""
        assert user.order is not None and user.instance is not None
        held, o = user.instance, user.order
        other = 1 - o
        if op == "save_root":
            held.customer = f"c{self.counts['steps']}"
            held.save()
        elif op == "line_save":
            OrderLine(order=held, product="s").save()
        elif op == "related_create":
            held.lines.create(product="r")
        elif op == "bulk_create":
            OrderLine.objects.bulk_create([OrderLine(order=held, product="b")])
        elif op == "add_move":
            line = OrderLine.objects.filter(order_id=self.pks[other]).order_by("pk").first()
            if line is None:
                return False
            held.lines.add(line)
        elif op == "update_to":
            if not OrderLine.objects.filter(order_id=self.pks[o]).update(order=held):
                return False
        elif op == "delete_line":
            line = OrderLine.objects.filter(order_id=self.pks[o]).order_by("pk").first()
            if line is None:
                return False
            line.order = held
            line.delete()
        return True

    def _apply_held(self, op: str, user: User) -> None:
        assert user.order is not None
        o = user.order
        expected = self._acceptable(user)
        before = self._lines(o), self._lines(1 - o)
        try:
            wrote = self._held(op, user)
        except RecordModifiedError:
            self.counts["refused"] += 1
            assert not expected, f"{op}: a current holder was refused"
            if self.tx is not None:
                if op in SAVES:
                    assert not connection.needs_rollback, f"{op}: the refusal wrote something"
                elif connection.needs_rollback:
                    # Django's queryset methods (before 6.1) mark their transaction on any
                    # error; the refusal itself wrote nothing either way.
                    raise _RollBackError from None
            return
        if not wrote:
            return
        self.counts["accepted"] += 1
        assert expected, f"{op}: a stale holder was accepted"
        if op == "add_move":
            self._set_lines(o, before[0] + 1)
            self._set_lines(1 - o, before[1] - 1)
            self._changed(1 - o)
        elif op in ("line_save", "related_create", "bulk_create"):
            self._set_lines(o, before[0] + 1)
        elif op == "delete_line":
            self._set_lines(o, before[0] - 1)
        self._changed(o, own=op == "save_root", holder=user)

    def _apply_unheld(self, op: str, o: int) -> None:
        pk = self.pks[o]
        lines = OrderLine._base_manager.filter(order_id=pk)
        changed = True
        if op == "qs_update":
            changed = bool(OrderLine.objects.filter(order_id=pk).update(quantity=F("quantity") + 1))
        elif op == "base_bulk_update":
            rows = list(lines)
            for row in rows:
                row.quantity += 1
            changed = bool(rows) and bool(OrderLine._base_manager.bulk_update(rows, ["quantity"]))
        elif op == "line_save_plain":
            row = lines.order_by("pk").first()
            changed = row is not None
            if row is not None:
                row.quantity += 1
                row.save()
        elif op == "bulk_create_id":
            OrderLine.objects.bulk_create([OrderLine(order_id=pk, product="i")])
            self._set_lines(o, self._lines(o) + 1)
        elif op == "qs_delete":
            row = lines.order_by("pk").first()
            changed = row is not None
            if row is not None:
                OrderLine.objects.filter(pk=row.pk).delete()
                self._set_lines(o, self._lines(o) - 1)
        elif op == "parcels":
            # Nested: a parcel write moves its shipment, which moves its order.
            changed = bool(Parcel.objects.filter(shipment__order_id=pk).update(weight=F("weight") + 1))
        elif op == "set_null":
            # Deleting another parent of a child: SET_NULL is a write of the child.
            workers = Worker.objects.filter(tasks__order_id=pk)
            if workers.exists():
                tasks = Task.objects.filter(worker__in=list(workers), order__isnull=False)
                touched = set(tasks.values_list("order_id", flat=True))
                Worker.objects.filter(pk__in=list(workers.values_list("pk", flat=True))).delete()
                for index, order_pk in enumerate(self.pks):
                    if order_pk in touched:
                        self._changed(index)
                changed = False
            else:
                worker = Worker.objects.create(name="w")
                changed = bool(Task.objects.filter(order_id=pk).update(worker=worker))
        elif op == "move_tasks":
            # A related manager's set(): the other order's tasks leave it (set to NULL), this
            # order's tasks join it; one transaction, so each order moves once.
            other = 1 - o
            mine, theirs = self._tasks(o), self._tasks(other)
            Order.objects.get(pk=self.pks[other]).tasks.set(list(Task.objects.filter(order_id=pk)))
            self._set_tasks(other, mine)
            self._set_tasks(o, 0)
            if theirs or mine:
                self._changed(other)
            changed = bool(mine)
        self.counts[op] += 1
        if changed:
            self._changed(o)

    def _verify(self, user: User) -> None:
        expected = self._acceptable(user)
        try:
            verify_unchanged(user.instance)
        except RecordModifiedError:
            self.counts["verify refused"] += 1
            assert not expected, "verify_unchanged refused a current holder"
            assert not connection.needs_rollback
            return
        self.counts["verify accepted"] += 1
        assert expected, "verify_unchanged accepted a stale holder"
        if self.tx is not None and user.order in self.tx.touched:
            user.fresh = True

    # -- rules -------------------------------------------------------------------------

    @rule(index=st.integers(0, USERS - 1), o=st.integers(0, ORDERS - 1))
    def load(self, index: int, o: int) -> None:
        user = self.users[index]
        user.order, user.instance = o, Order.objects.get(pk=self.pks[o])
        user.seen, user.fresh = self.committed[o], False
        self.counts["steps"] += 1

    @rule(index=st.integers(0, USERS - 1), op=st.sampled_from(HELD), reload=st.booleans())
    def held_write(self, index: int, op: str, reload: bool) -> None:
        self.counts["steps"] += 1
        user = self.users[index]
        if reload and user.order is not None:
            self.load(index, user.order)
        if user.instance is None:
            return
        self.counts[op] += 1
        self._apply_held(op, user)

    @rule(op=st.sampled_from(UNHELD), o=st.integers(0, ORDERS - 1))
    def unheld_write(self, op: str, o: int) -> None:
        self.counts["steps"] += 1
        self._apply_unheld(op, o)

    @rule(
        steps=st.lists(
            st.one_of(
                st.tuples(st.just("held"), st.integers(0, USERS - 1), st.sampled_from(HELD)),
                st.tuples(st.just("unheld"), st.integers(0, ORDERS - 1), st.sampled_from(UNHELD)),
                st.tuples(st.just("verify"), st.integers(0, USERS - 1), st.just("")),
            ),
            min_size=1,
            max_size=4,
        ),
        roll_back=st.booleans(),
        decorated=st.booleans(),
    )
    def in_one_transaction(self, steps: list[tuple[str, int, str]], roll_back: bool, decorated: bool) -> None:
        self.counts["steps"] += 1
        self.counts["transactions"] += 1
        self.tx = Tx()

        def work() -> None:
            for kind, n, op in steps:
                if kind == "unheld":
                    self._apply_unheld(op, n)
                elif self.users[n].instance is not None:
                    if kind == "held":
                        self._apply_held(op, self.users[n])
                    else:
                        self._verify(self.users[n])
            if roll_back:
                raise _RollBackError

        try:
            if decorated:
                _in_transaction(work)
            else:
                with transaction.atomic():
                    work()
        except _RollBackError:
            self.counts["rolled back"] += 1
        else:
            for o, delta in self.tx.delta.items():
                self.version[o] += delta
                self.committed[o] += 1
            for o, n in self.tx.lines.items():
                self.lines[o] = n
            for o, n in self.tx.tasks.items():
                self.tasks[o] = n
            for user in self.users:
                if user.fresh and user.order is not None:
                    user.seen = self.committed[user.order]
        finally:
            for user in self.users:
                user.fresh = False
            self.tx = None

    @rule(draw=st.integers(0, 3))
    def two_threads_in_the_decorated_function(self, draw: int) -> None:
        """Another thread saves order 1 through the same decorated function while this one writes order 0."""
        self.counts["steps"] += 1
        if draw:
            return  # one draw in four: the other rules get the steps
        self.counts["two threads"] += 1
        barrier = threading.Barrier(2, timeout=WAIT)
        errors: list[BaseException] = []

        def theirs() -> None:
            try:
                barrier.wait()

                def save() -> None:
                    Order.objects.get(pk=self.pks[1]).save()

                _in_transaction(save)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=theirs)
        thread.start()
        barrier.wait()
        _in_transaction(lambda: OrderLine.objects.filter(order_id=self.pks[0]).update(quantity=1))
        thread.join(WAIT)
        assert not thread.is_alive()
        assert not errors, errors
        assert not connection.in_atomic_block
        changed = self.lines[0] > 0
        self._changed(1)
        if changed:
            self._changed(0)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def versions_and_holders_match_the_model(self) -> None:
        if not hasattr(self, "pks"):
            return
        stored = dict(Order.objects.filter(pk__in=self.pks).values_list("pk", "version"))
        assert [stored[pk] for pk in self.pks] == self.version
        counts = [OrderLine.objects.filter(order_id=pk).count() for pk in self.pks]
        assert counts == self.lines
        assert [Task.objects.filter(order_id=pk).count() for pk in self.pks] == self.tasks
        for user in self.users:
            if user.instance is None or user.order is None:
                continue
            if user.seen == self.committed[user.order]:
                assert user.instance.version == self.version[user.order], "a current holder is behind"
            else:
                assert user.instance.version < self.version[user.order]


@pytest.mark.django_db(transaction=True)
def test_aggregates_over_every_write_path() -> None:
    counts: collections.Counter[str] = collections.Counter()
    machine = type("AggregatePaths", (Aggregates,), {"counts": counts})
    started = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    elapsed = time.monotonic() - started
    detail = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()) if k not in ("examples", "steps"))
    print(
        f"\naggregates on {connection.vendor}: {counts['examples']} examples, {counts['steps']} steps"
        f" in {elapsed:.1f}s ({detail})"
    )
    assert counts["steps"] >= EXAMPLES * 5
    assert counts["refused"] and counts["accepted"] and counts["transactions"]
