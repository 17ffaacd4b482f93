"""Property-based tests: random interleavings of several users against a model of the outcome.

Each simulated user holds an instance of their own (what one browser tab or
one app server would hold). Hypothesis interleaves loads, saves, deletes and
rolled-back saves, with checks or increments switched off now and then, and
after every step the database is compared with a model that says which writes
must be accepted:

* a checked save is accepted exactly when its user has seen every
  version-changing write of the row (no stale write ever accepted);
* a refused save or delete changes nothing, and an accepted one is in the row
  until someone who saw it writes again (no acknowledged write lost);
* every write that changes the version makes it strictly larger.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import NotSupportedError, connection, models, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from concurrency.api import concurrency_disable_increment, disable_concurrency, retry_on_conflict
from concurrency.exceptions import BulkUpdateConflictError, RecordDeletedError, RecordModifiedError
from concurrency.managers import VersionedQuerySet
from tests.demo.models import ConditionalArticle, Counter, Note, Stock, Tag, TriggerRow

USERS = 3

# How a write is made: which toggle, if any, is on around it.
MODES = (
    "checked",
    "disabled",  # disable_concurrency(): everything
    "disabled-model",  # disable_concurrency(Counter)
    "disabled-instance",  # disable_concurrency(instance)
    "no-increment-model",  # concurrency_disable_increment(Counter)
    "no-increment-instance",  # concurrency_disable_increment(instance)
)


class _RollbackError(Exception):
    """Raised inside atomic() to roll back a transaction that did write."""


@dataclass(frozen=True)
class Subject:
    """A versioned model under test and how its version field behaves."""

    model: type[models.Model]
    value: str  # the field the users write
    convert: Any  # int -> a value of that field
    honours_no_increment: bool = True  # concurrency_disable_increment keeps the version
    bumps_only_on_change: bool = False  # ConditionalVersionField

    def create(self, n: int) -> models.Model:
        return self.model.objects.create(**{self.value: self.convert(0)}, **EXTRA.get(self.model, {}))


EXTRA: dict[Any, dict[str, Any]] = {Counter: {"name": "r"}, TriggerRow: {"name": "r"}, Note: {"body": ""}}

SUBJECTS = {
    "AutoIncVersionField": Subject(Counter, "value", int),
    "IntegerVersionField": Subject(Note, "title", str),
    "TriggerVersionField": Subject(TriggerRow, "count", int, honours_no_increment=False),
    "ConditionalVersionField": Subject(ConditionalArticle, "title", str, bumps_only_on_change=True),
}


@dataclass
class Row:
    """What the model expects of one row."""

    exists: bool
    value: Any
    version: int
    writes: int  # version-changing writes so far


@dataclass
class User:
    instance: Any = None
    seen: int = 0  # writes of the row this user has seen
    version: int = 0  # the committed version the instance should hold


def _toggle(mode: str, instance: models.Model) -> Any:
    model = type(instance)
    target: Any = {"disabled": None, "disabled-model": model, "disabled-instance": instance}
    if mode in target:
        return disable_concurrency(target[mode])
    if mode == "no-increment-model":
        return concurrency_disable_increment(model)
    if mode == "no-increment-instance":
        return concurrency_disable_increment(instance)
    return contextlib.nullcontext()


class VersionedRows(RuleBasedStateMachine):
    subject: Subject
    tried: list[int]

    def __init__(self) -> None:
        super().__init__()
        self.model = self.subject.model
        self.model.objects.all().delete()
        self.rows: dict[Any, Row] = {}
        self.users = [User() for _ in range(USERS)]
        self.current: Any = None
        self.tried.append(0)
        self._create()

    def _create(self) -> None:
        row = self.subject.create(len(self.rows))
        self.rows[row.pk] = Row(
            exists=True, value=getattr(row, self.subject.value), version=row.version, writes=0
        )
        self.current = row.pk

    def _loaded(self, index: int) -> tuple[User, Any, Row]:
        user = self.users[index]
        assert user.instance is not None
        return user, user.instance, self.rows[user.instance.pk]

    # --- rules ---------------------------------------------------------------

    @rule(index=st.integers(0, USERS - 1))
    def load(self, index: int) -> None:
        expected = self.rows[self.current]
        user = self.users[index]
        if not expected.exists:
            assert not self.model.objects.filter(pk=self.current).exists()
            return
        user.instance = self.model.objects.get(pk=self.current)
        user.seen = expected.writes
        user.version = expected.version
        assert (getattr(user.instance, self.subject.value), user.instance.version) == (
            expected.value,
            expected.version,
        )

    @precondition(lambda self: not self.rows[self.current].exists)
    @rule()
    def recreate(self) -> None:
        self._create()

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(
        index=st.integers(0, USERS - 1),
        value=st.integers(-5, 5),
        mode=st.sampled_from(MODES),
        roll_back=st.booleans(),
    )
    def save(self, index: int, value: int, mode: str, roll_back: bool) -> None:
        user = self.users[index]
        if user.instance is None:
            return
        user, instance, expected = self._loaded(index)
        checked = not mode.startswith("disabled")
        if not expected.exists and not checked:
            # An unchecked save of a deleted row inserts it again: plain Django, not modelled.
            return
        accepted = expected.exists and (not checked or user.seen == expected.writes)
        self.tried[-1] += 1
        new_value = self.subject.convert(value)
        setattr(instance, self.subject.value, new_value)
        try:
            with transaction.atomic(), _toggle(mode, instance):
                instance.save()
                if roll_back:
                    raise _RollbackError
        except _RollbackError:
            assert accepted, "a stale save was accepted (then rolled back)"
            return
        except RecordDeletedError:
            assert not expected.exists and checked
            assert instance.version == user.version, "a refused save changed the instance's version"
            return
        except RecordModifiedError:
            assert not accepted, "a save that should have been accepted was refused"
            assert instance.version == user.version, "a refused save changed the instance's version"
            return
        assert accepted, f"a stale save was accepted ({mode})"
        row_version = self.model.objects.get(pk=instance.pk).version
        if row_version != expected.version:
            assert row_version > expected.version, "the version went down"
            expected.writes += 1
        else:
            kept = mode.startswith("no-increment") and self.subject.honours_no_increment
            unchanged = self.subject.bumps_only_on_change and new_value == expected.value
            assert kept or unchanged, f"a write ({mode}) did not change the version"
        expected.value = new_value
        expected.version = row_version
        user.version = instance.version
        if instance.version == expected.version:
            user.seen = expected.writes

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(index=st.integers(0, USERS - 1), disabled=st.booleans(), roll_back=st.booleans())
    def delete(self, index: int, disabled: bool, roll_back: bool) -> None:
        user = self.users[index]
        if user.instance is None:
            return
        user, instance, expected = self._loaded(index)
        accepted = not expected.exists or disabled or user.seen == expected.writes
        self.tried[-1] += 1
        try:
            with transaction.atomic(), _toggle("disabled" if disabled else "checked", instance):
                instance.delete()
                if roll_back:
                    raise _RollbackError
        except _RollbackError:
            assert accepted, "a stale delete was accepted (then rolled back)"
            user.instance = None  # delete() cleared its primary key
            return
        except RecordModifiedError:
            assert not accepted, "a delete that should have been accepted was refused"
            return
        assert accepted, "a stale delete was accepted"
        expected.exists = False
        user.instance = None

    # --- invariants ----------------------------------------------------------

    @invariant()
    def rows_match_the_model(self) -> None:
        rows = self.model.objects.values_list("pk", self.subject.value, "version")
        found = {pk: (value, version) for pk, value, version in rows}
        wanted = {pk: (r.value, r.version) for pk, r in self.rows.items() if r.exists}
        assert found == wanted


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", list(SUBJECTS))
def test_random_interleavings_never_accept_a_stale_write_nor_lose_an_acknowledged_one(kind: str) -> None:
    tried: list[int] = []
    machine = type(f"{kind}Rows", (VersionedRows,), {"subject": SUBJECTS[kind], "tried": tried})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print(f"\n{kind}: {len(tried)} interleavings, {sum(tried)} writes tried")
    assert sum(tried) > 150


# Interleavings Hypothesis found, kept as plain tests.


@pytest.mark.django_db(transaction=True)
def test_unchecked_stale_save_never_moves_the_version_back() -> None:
    pk = Counter.objects.create(name="c").pk
    stale = Counter.objects.get(pk=pk)
    for value in (1, 2):
        row = Counter.objects.get(pk=pk)
        row.value = value
        row.save()
        if value == 1:
            bystander = Counter.objects.get(pk=pk)  # reads version 2
    with disable_concurrency():
        stale.value = 10
        stale.save()
    version = Counter.objects.get(pk=pk).version
    assert version == 4  # past the row's 3, not the stale instance's 1 + 1
    # Without the floor the stale save would have stored 2 again, and the
    # bystander, who never saw versions 3 and 10, would have overwritten them.
    bystander.value = 20
    with pytest.raises(RecordModifiedError):
        bystander.save()
    assert Counter.objects.get(pk=pk).value == 10


@pytest.mark.django_db(transaction=True)
def test_unchecked_write_without_increment_keeps_the_row_version() -> None:
    pk = Counter.objects.create(name="c").pk
    stale = Counter.objects.get(pk=pk)
    Counter.objects.get(pk=pk).save()
    Counter.objects.get(pk=pk).save()
    with disable_concurrency(), concurrency_disable_increment(Counter):
        stale.value = 10
        stale.save()
    assert (Counter.objects.get(pk=pk).value, Counter.objects.get(pk=pk).version) == (10, 3)


# --- Every write path (issue #10) ------------------------------------------------
# A second machine drives every path that writes a versioned row or moves the
# version an instance holds: save, delete, the many-to-many touch of a
# ConditionalVersionField, VersionedQuerySet.update() and bulk_update(), upserts
# (refused), rollbacks at any depth of nested atomic() blocks, pickle and copies
# of any instance (also made while its write is uncommitted), refresh_from_db(),
# retry_on_conflict() over several instances, and one toggle object entered from
# two threads. After every step each row must equal the serial history of the
# writes accepted so far, and no write based on a stale read may have been
# accepted, even if it was rolled back afterwards.
#
# CONCURRENCY_STATEFUL_EXAMPLES and CONCURRENCY_STATEFUL_STEPS make local runs longer.

PATH_EXAMPLES = int(os.environ.get("CONCURRENCY_STATEFUL_EXAMPLES", "25"))
PATH_STEPS = int(os.environ.get("CONCURRENCY_STATEFUL_STEPS", "25"))
WAIT = 60.0

COPIES: dict[str, Callable[[Any], Any]] = {
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}

# Made once, as an application would at module level, and shared by every thread.
SHARED_TOGGLES: dict[tuple[type[models.Model], str], Any] = {
    (model, mode): toggle
    for model in (Stock, ConditionalArticle)
    for mode, toggle in (
        ("disabled-model", disable_concurrency(model)),
        ("no-increment-model", concurrency_disable_increment(model)),
    )
}

DEPTHS = st.integers(0, 3)
ROLLBACK_AT = st.one_of(st.none(), st.integers(0, 2))


@dataclass(frozen=True)
class PathSubject:
    model: type[models.Model]
    value: str
    convert: Callable[[int], Any]
    grow: Callable[[Any], Any]  # the read-modify-write of the retry rule
    extra: dict[str, Any]
    m2m: bool = False
    bumps_only_on_change: bool = False

    def make(self, value: Any, **kwargs: Any) -> models.Model:
        return self.model(**{**self.extra, self.value: value, **kwargs})


PATH_SUBJECTS = {
    "Stock": PathSubject(Stock, "quantity", int, lambda v: v + 10, {"name": "s"}),
    "ConditionalArticle": PathSubject(
        ConditionalArticle, "title", str, lambda v: f"{v}+", {}, m2m=True, bumps_only_on_change=True
    ),
}


@dataclass
class PathRow:
    exists: bool
    value: Any
    version: int
    writes: int = 0  # version-changing writes so far
    tagged: bool = False


@dataclass
class Holder:
    """One user's instance of a row, and what the model knows of it."""

    instance: Any = None
    seen: int = 0  # the version-changing writes the instance is based on
    # False for a copy made while its write was uncommitted: whether it trusts
    # its version is the library's choice, so it may be refused even when
    # current, but must never be accepted when stale.
    certain: bool = True


class EveryWritePath(RuleBasedStateMachine):
    subject: PathSubject
    counts: collections.Counter[str]

    def __init__(self) -> None:
        super().__init__()
        self.model = self.subject.model
        self.model._base_manager.all().delete()
        self.qs = VersionedQuerySet(self.model)
        self.rows: dict[Any, PathRow] = {}
        self.users = [Holder() for _ in range(USERS)]
        self.current: Any = None
        self.aux = self._new_row()  # a second row for batches and transfers
        self.current = self._new_row()
        for index in range(USERS):  # everybody starts with the row loaded
            self.users[index] = Holder(self.model._base_manager.get(pk=self.current))
        self.tag = Tag.objects.get_or_create(name="stateful")[0] if self.subject.m2m else None
        self.counts["examples"] += 1
        self.behind = False
        self.hot_attempts = 0
        # One function for the whole example: a call like one refused a moment ago is hot.
        self.hot_transfer = retry_on_conflict(attempts=3, lock_on_retry=True)(self._transfer_by_key)

    def _transfer_by_key(self, pk: Any, other: Any) -> None:
        """Read two rows by key, grow both, save both (the function of the hot_read_by_key rule)."""
        self.hot_attempts += 1
        field, grow = self.subject.value, self.subject.grow
        first = self.model._base_manager.get(pk=pk)
        second = self.model._base_manager.get(pk=other)
        if self.behind:
            # A write between this attempt's read and its save, in its own transaction:
            # the save is refused, the attempt (and this write with it) rolled back.
            self.behind = False
            self.model._base_manager.filter(pk=pk).update(version=models.F("version") + 1)
        setattr(first, field, grow(getattr(first, field)))
        first.save()
        setattr(second, field, grow(getattr(second, field)))
        second.save()

    def _new_row(self) -> Any:
        row = self.subject.make(self.subject.convert(0))
        row.save()
        self.rows[row.pk] = PathRow(True, getattr(row, self.subject.value), row.version)
        return row.pk

    def _stored_version(self, pk: Any) -> int:
        return self.model._base_manager.values_list("version", flat=True).get(pk=pk)

    def _holder(self, index: int) -> tuple[Holder, Any, PathRow] | None:
        user = self.users[index]
        if user.instance is None:
            return None
        return user, user.instance, self.rows[user.instance.pk]

    def _verdict(self, user: Holder, expected: PathRow, checked: bool = True) -> tuple[bool, bool]:
        """Return (must be accepted, may be accepted) for a write from ``user``."""
        if not expected.exists:
            return False, False
        if not checked:
            return True, True
        current = user.seen == expected.writes
        return (current and user.certain), current

    def _step(self, name: str) -> None:
        self.counts[name] += 1
        self.counts["steps"] += 1

    def _nested(self, depth: int, rollback_at: int | None, body: Callable[[], None]) -> bool:
        """Run ``body`` in ``depth`` nested atomic() blocks, rolling back the one at ``rollback_at``.

        Return whether what ``body`` wrote was committed.
        """
        if depth == 0 or rollback_at is None or rollback_at >= depth:
            rollback_at = None
        rolled_back = False

        def run(level: int) -> None:
            nonlocal rolled_back
            if level == depth:
                body()
                return
            try:
                with transaction.atomic():
                    run(level + 1)
                    if level == rollback_at:
                        raise _RollbackError
            except _RollbackError:
                if level != rollback_at:
                    raise
                rolled_back = True

        run(0)
        return not rolled_back

    def _accepted(
        self, user: Holder, instance: Any, expected: PathRow, new_value: Any, kept: bool = False
    ) -> None:
        """Bring the model up to date after a committed write of ``instance``."""
        row_version = self._stored_version(instance.pk)
        if row_version != expected.version:
            assert row_version > expected.version, "the version went down"
            expected.writes += 1
        else:
            unchanged = self.subject.bumps_only_on_change and new_value == expected.value
            assert kept or unchanged, "a write did not change the version"
        expected.value = new_value
        expected.version = row_version
        if instance.version == row_version:
            user.seen, user.certain = expected.writes, True
        else:
            user.certain = False

    def _copies_made_inside(
        self, copies: list[tuple[int, Any]], user: Holder, committed: bool, seen_before: int
    ) -> None:
        for target, duplicate in copies:
            seen = user.seen if committed else seen_before
            self.users[target] = Holder(duplicate, seen, certain=False)

    # --- rules -------------------------------------------------------------------

    @precondition(lambda self: not self.rows[self.current].exists)
    @rule()
    def recreate(self) -> None:
        self._step("recreate")
        self.current = self._new_row()

    def _save(
        self,
        index: int,
        value: int,
        mode: str,
        depth: int,
        rollback_at: int | None,
        copy_to: tuple[int, str] | None,
        toggle: Any,
    ) -> None:
        held = self._holder(index)
        if held is None:
            return
        user, instance, expected = held
        checked = not mode.startswith("disabled")
        if not expected.exists and not checked:
            return  # an unchecked save of a deleted row inserts it again: plain Django
        must, may = self._verdict(user, expected, checked)
        self._step(f"save {mode}")
        new_value = self.subject.convert(value)
        setattr(instance, self.subject.value, new_value)
        before, seen_before = instance.version, user.seen
        copies: list[tuple[int, Any]] = []

        def body() -> None:
            with toggle(instance):
                instance.save()
            assert may, f"a stale save was accepted ({mode}, depth {depth})"
            if copy_to is not None:
                copies.append((copy_to[0], COPIES[copy_to[1]](instance)))

        try:
            committed = self._nested(depth, rollback_at, body)
        except RecordModifiedError:
            assert not must, f"a save that should have been accepted was refused ({mode})"
            assert instance.version == before, "a refused save changed the instance's version"
            return
        if committed:
            kept = mode.startswith("no-increment")
            self._accepted(user, instance, expected, new_value, kept=kept)
        else:
            assert instance.version == before, "a rolled-back save left its version on the instance"
        self._copies_made_inside(copies, user, committed, seen_before)

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(
        index=st.integers(0, USERS - 1),
        value=st.integers(-5, 5),
        mode=st.sampled_from(MODES),
        depth=DEPTHS,
        rollback_at=ROLLBACK_AT,
        copy_to=st.none() | st.tuples(st.integers(0, USERS - 1), st.sampled_from(list(COPIES))),
    )
    def save(
        self,
        index: int,
        value: int,
        mode: str,
        depth: int,
        rollback_at: int | None,
        copy_to: tuple[int, str] | None,
    ) -> None:
        self._save(index, value, mode, depth, rollback_at, copy_to, lambda instance: _toggle(mode, instance))

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(
        index=st.integers(0, USERS - 1),
        disabled=st.booleans(),
        depth=DEPTHS,
        rollback_at=ROLLBACK_AT,
    )
    def delete(self, index: int, disabled: bool, depth: int, rollback_at: int | None) -> None:
        held = self._holder(index)
        if held is None:
            return
        user, instance, expected = held
        self._step("delete")
        must, may = self._verdict(user, expected, checked=not disabled)
        if not expected.exists:
            must = may = True  # deleting what is gone deletes nothing
        before = instance.version

        def body() -> None:
            with _toggle("disabled" if disabled else "checked", instance):
                instance.delete()
            assert may, "a stale delete was accepted"

        try:
            committed = self._nested(depth, rollback_at, body)
        except RecordModifiedError:
            assert not must, "a delete that should have been accepted was refused"
            assert instance.version == before
            return
        user.instance = None  # delete() cleared its primary key
        if committed and expected.exists:
            expected.exists, expected.tagged = False, False

    @precondition(lambda self: self.subject.m2m and any(u.instance is not None for u in self.users))
    @rule(index=st.integers(0, USERS - 1), add=st.booleans(), depth=DEPTHS, rollback_at=ROLLBACK_AT)
    def many_to_many(self, index: int, add: bool, depth: int, rollback_at: int | None) -> None:
        held = self._holder(index)
        if held is None or not held[2].exists:
            return
        user, instance, expected = held
        self._step("m2m add" if add else "m2m remove")
        changes = add != expected.tagged
        must, may = self._verdict(user, expected)
        before = instance.version

        def body() -> None:
            if add:
                instance.tags.add(self.tag)
            else:
                instance.tags.remove(self.tag)
            assert may or not changes, "a stale many-to-many change was accepted"

        try:
            committed = self._nested(depth, rollback_at, body)
        except RecordModifiedError:
            assert changes and not must, "a many-to-many change that should have been accepted was refused"
            assert instance.version == before
            return
        if not changes:
            assert instance.version == before
        elif not committed:
            assert instance.version == before, "a rolled-back touch left its version on the instance"
        else:
            expected.tagged = add
            self._accepted(user, instance, expected, expected.value)

    @rule(
        value=st.integers(-5, 5),
        depth=DEPTHS,
        rollback_at=ROLLBACK_AT,
        how=st.sampled_from(["update()", "update()", "update()", "upsert", "upsert (plain manager)"]),
    )
    def queryset_update(self, value: int, depth: int, rollback_at: int | None, how: str) -> None:
        expected = self.rows[self.current]
        if not expected.exists:
            return
        if how.startswith("upsert"):
            self._upsert(value, plain=how != "upsert")
            return
        self._step("update()")
        new_value = self.subject.convert(value)

        def body() -> None:
            assert self.qs.filter(pk=self.current).update(**{self.subject.value: new_value}) == 1

        if not self._nested(depth, rollback_at, body):
            return
        row_version = self._stored_version(self.current)
        if row_version != expected.version:
            assert row_version > expected.version
            expected.writes += 1
        else:
            assert self.subject.bumps_only_on_change and new_value == expected.value
        expected.value, expected.version = new_value, row_version

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(
        index=st.integers(0, USERS - 1),
        value=st.integers(-5, 5),
        with_aux=st.booleans(),
        skip=st.booleans(),
        duplicate=st.booleans(),
        depth=DEPTHS,
        rollback_at=ROLLBACK_AT,
    )
    def bulk_update(
        self,
        index: int,
        value: int,
        with_aux: bool,
        skip: bool,
        duplicate: bool,
        depth: int,
        rollback_at: int | None,
    ) -> None:
        held = self._holder(index)
        if held is None:
            return
        user, instance, expected = held
        self._step("bulk_update()")
        field = self.subject.value
        new_value = self.subject.convert(value)
        setattr(instance, field, new_value)
        objs = [instance]
        aux = self.rows[self.aux]
        aux_value = self.subject.convert(value + 100)
        if with_aux:
            aux_instance = self.model._base_manager.get(pk=self.aux)
            setattr(aux_instance, field, aux_value)
            objs.append(aux_instance)
        before = instance.version
        if duplicate:
            twin = self.model._base_manager.get(pk=instance.pk) if expected.exists else copy.copy(instance)
            twin.pk = str(instance.pk)  # the same row, its key spelled as a string
            with pytest.raises(ValueError):
                self.qs.bulk_update([*objs, twin], [field])
            assert instance.version == before
            return
        must, may = self._verdict(user, expected)
        refused: list[Any] = []

        def body() -> None:
            if skip:
                refused.extend(self.qs.bulk_update(objs, [field], on_conflict="skip"))
            else:
                self.qs.bulk_update(objs, [field])
            if instance not in refused:
                assert may, "a stale bulk_update() was accepted"

        try:
            committed = self._nested(depth, rollback_at, body)
        except BulkUpdateConflictError:
            assert not skip and not must, "a bulk_update() that should have been accepted was refused"
            assert instance.version == before
            return
        aux_written = with_aux and committed and all(obj is not objs[-1] for obj in refused)
        if instance in refused:
            assert not must, "a bulk_update() row that should have been written was refused"
            assert instance.version == before
        elif committed:
            self._accepted(user, instance, expected, new_value)
        else:
            assert instance.version == before, "a rolled-back bulk_update() left its version on the instance"
        if aux_written:
            version = self._stored_version(self.aux)
            if version != aux.version:
                assert version > aux.version
                aux.writes += 1
            aux.value, aux.version = aux_value, version

    def _upsert(self, value: int, plain: bool) -> None:
        """Upserts of versioned rows are refused before anything is written."""
        self._step("upsert (plain manager)" if plain else "upsert")
        manager = self.model._default_manager if plain else self.qs
        options: dict[str, Any] = {"update_conflicts": True, "update_fields": [self.subject.value]}
        if connection.features.supports_update_conflicts_with_target:
            options["unique_fields"] = ["pk"]
        new = self.subject.make(self.subject.convert(value), pk=self.current)
        with pytest.raises(NotSupportedError):
            manager.bulk_create([new, self.subject.make(self.subject.convert(value))], **options)

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(source=st.integers(0, USERS - 1), into=st.integers(0, USERS - 1), how=st.sampled_from(list(COPIES)))
    def duplicate(self, source: int, into: int, how: str) -> None:
        user = self.users[source]
        if user.instance is None:
            return
        self._step(f"duplicate {how}")
        duplicate = COPIES[how](user.instance)
        assert duplicate.version == user.instance.version
        self.users[into] = Holder(duplicate, user.seen, user.certain)

    @rule(index=st.integers(0, USERS - 1), fresh=st.booleans())
    def read(self, index: int, fresh: bool) -> None:
        """Load the current row afresh, or refresh the instance in hand."""
        held = self._holder(index)
        if fresh or held is None:
            self._step("load")
            expected = self.rows[self.current]
            if expected.exists:
                instance = self.model._base_manager.get(pk=self.current)
                self.users[index] = Holder(instance, expected.writes)
                assert (getattr(instance, self.subject.value), instance.version) == (
                    expected.value,
                    expected.version,
                )
            return
        user, instance, expected = held
        self._step("refresh_from_db")
        if not expected.exists:
            with pytest.raises(self.model.DoesNotExist):
                instance.refresh_from_db()
            user.instance = None
            return
        instance.refresh_from_db()
        user.seen, user.certain = expected.writes, True
        assert (getattr(instance, self.subject.value), instance.version) == (expected.value, expected.version)

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(
        index=st.integers(0, USERS - 1),
        others=st.lists(st.integers(0, USERS - 1), max_size=2, unique=True),
        stale_aux=st.booleans(),
        shape=st.sampled_from(["arguments", "list", "dict"]),
    )
    def retry_transfer(self, index: int, others: list[int], stale_aux: bool, shape: str) -> None:
        held = self._holder(index)
        if held is None or not held[2].exists or held[1].pk != self.current:
            return
        user, instance, expected = held
        self._step("retry_on_conflict")
        field, grow = self.subject.value, self.subject.grow
        aux = self.rows[self.aux]
        aux_instance = self.model._base_manager.get(pk=self.aux)
        if stale_aux:  # another user writes the second row after it was read
            aux.value = grow(aux.value)
            assert self.qs.filter(pk=self.aux).update(**{field: aux.value}) == 1
            aux.version, aux.writes = self._stored_version(self.aux), aux.writes + 1
        passed = [
            o
            for o in others
            if o != index and self.users[o].instance is not None and self.users[o].instance.pk == self.current
        ]
        extra = [self.users[o].instance for o in passed]
        must, may = self._verdict(user, expected)
        attempts: list[tuple[Any, int, Any]] = []

        def move(a: Any, b: Any) -> None:
            attempts.append((getattr(a, field), a.version, getattr(b, field)))
            setattr(a, field, grow(getattr(a, field)))
            a.save()
            setattr(b, field, grow(getattr(b, field)))
            b.save()

        @retry_on_conflict(attempts=3, delay=0)
        def transfer(*args: Any) -> None:
            if shape == "arguments":
                move(args[0], args[1])
            elif shape == "list":
                move(*args[0][:2])
            else:
                move(args[0]["from"], args[0]["to"])  # the others are values of the dict too

        if shape == "arguments":
            transfer(instance, aux_instance, *extra)
        elif shape == "list":
            transfer([instance, aux_instance, *extra])
        else:
            transfer({"from": instance, "to": aux_instance, **{f"other{n}": o for n, o in enumerate(extra)}})
        retried = len(attempts) > 1
        if must and not stale_aux:
            assert not retried, "a current transfer was retried"
        if not may or stale_aux:
            assert retried, "a stale transfer was not retried"
        if retried:
            # The attempt that was accepted started from the rows as stored.
            assert attempts[-1] == (expected.value, expected.version, aux.value)
            for o in passed:
                self.users[o].seen, self.users[o].certain = expected.writes, True
        self._accepted(user, instance, expected, getattr(instance, field))
        version = self._stored_version(self.aux)
        assert version > aux.version
        aux.value, aux.version, aux.writes = getattr(aux_instance, field), version, aux.writes + 1

    @precondition(lambda self: self.rows[self.current].exists)
    @rule(behind=st.booleans(), depth=DEPTHS, rollback_at=ROLLBACK_AT)
    def hot_read_by_key(self, behind: bool, depth: int, rollback_at: int | None) -> None:
        """retry_on_conflict(lock_on_retry=True) over a function that reads its rows by key.

        ``behind`` makes the first attempt refused, and the calls after it hot: their
        read of the refused row by key is the locking read.
        """
        self._step("retry_on_conflict(lock_on_retry=True), rows read by key")
        current, aux = self.rows[self.current], self.rows[self.aux]
        self.behind, self.hot_attempts = behind, 0
        sent: list[str] = []

        def body() -> None:
            with CaptureQueriesContext(connection) as queries:
                self.hot_transfer(self.current, self.aux)
            sent.extend(q["sql"] for q in queries.captured_queries)

        committed = self._nested(depth, rollback_at, body)
        assert self.hot_attempts == (2 if behind else 1)
        selects = [sql for sql in sent if sql.startswith("SELECT")]
        lock = connection.ops.for_update_sql() if connection.features.has_select_for_update else None
        if not behind and lock and any(sql.endswith(lock) for sql in selects):
            # A hot call: the function's own read of the refused row took the lock,
            # and nothing else was locked or read for it.
            self._step("hot call")
            assert [sql.endswith(lock) for sql in selects] == [True, False]
        if not committed:
            return
        for pk, row in ((self.current, current), (self.aux, aux)):
            version = self._stored_version(pk)
            assert version > row.version, "a write did not move the version"
            row.value, row.version, row.writes = self.subject.grow(row.value), version, row.writes + 1

    @precondition(lambda self: any(u.instance is not None for u in self.users))
    @rule(
        index=st.integers(0, USERS - 1),
        value=st.integers(-5, 5),
        mode=st.sampled_from(["disabled-model", "no-increment-model"]),
        inside=st.booleans(),
    )
    def toggle_from_two_threads(self, index: int, value: int, mode: str, inside: bool) -> None:
        """Another thread enters the same toggle object; it leaves while this one may still be inside."""
        self._step(f"toggle from two threads ({'both inside' if inside else 'other thread only'})")
        shared = SHARED_TOGGLES[(self.model, mode)]
        entered, go, left = threading.Event(), threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with shared:
                    entered.set()
                    assert go.wait(WAIT)
            except BaseException as exc:
                errors.append(exc)
            finally:
                entered.set()
                left.set()

        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        assert entered.wait(WAIT)
        if inside:
            with shared:
                go.set()
                assert left.wait(WAIT)  # the other thread left first
                self._save(index, value, mode, 0, None, None, lambda instance: contextlib.nullcontext())
        else:
            # The other thread's toggle must not reach this one: the save is checked.
            self._save(index, value, "checked", 0, None, None, lambda instance: contextlib.nullcontext())
            go.set()
        thread.join(WAIT)
        assert not thread.is_alive()
        assert not errors, errors

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def rows_equal_the_serial_history(self) -> None:
        rows = self.model._base_manager.values_list("pk", self.subject.value, "version")
        found = {pk: (value, version) for pk, value, version in rows}
        wanted = {pk: (r.value, r.version) for pk, r in self.rows.items() if r.exists}
        assert found == wanted
        if self.subject.m2m:
            through = ConditionalArticle.tags.through._base_manager
            tagged = set(through.values_list("conditionalarticle_id", flat=True))
            assert tagged == {pk for pk, r in self.rows.items() if r.exists and r.tagged}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", list(PATH_SUBJECTS))
def test_every_write_path_never_accepts_a_stale_write(kind: str) -> None:
    counts: collections.Counter[str] = collections.Counter()
    machine = type(f"{kind}Paths", (EveryWritePath,), {"subject": PATH_SUBJECTS[kind], "counts": counts})
    started = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=PATH_EXAMPLES,
            stateful_step_count=PATH_STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    elapsed = time.monotonic() - started
    detail = ", ".join(
        f"{name}: {n}" for name, n in sorted(counts.items()) if name not in ("examples", "steps")
    )
    print(
        f"\n{kind} on {connection.vendor}: {counts['examples']} examples, {counts['steps']} steps"
        f" in {elapsed:.1f}s ({detail})"
    )
    assert counts["steps"] >= PATH_EXAMPLES * 5
