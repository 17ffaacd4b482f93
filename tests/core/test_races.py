"""Read-modify-write races between real connections (one per thread)."""

from __future__ import annotations

import pytest
from django.db import transaction

from concurrency.api import disable_concurrency
from concurrency.exceptions import RecordModifiedError
from tests.demo.models import Counter, PlainCounter
from tests.support.races import raised, run_together

pytestmark = pytest.mark.race

THREADS = 4
INCREMENTS = 15


def _hammer(model: type, *, retry: bool, disabled: bool = False) -> tuple[int, int]:
    """Run THREADS threads doing INCREMENTS read-modify-write increments each.

    Returns (final value, conflicts seen).
    """
    obj = model.objects.create(name="hot")

    def work() -> int:
        done = 0
        seen = 0
        while done < INCREMENTS:
            row = model.objects.get(pk=obj.pk)
            row.value += 1
            try:
                with transaction.atomic():
                    if disabled:
                        with disable_concurrency():
                            row.save()
                    else:
                        row.save()
                done += 1
            except RecordModifiedError:
                seen += 1
                if not retry:
                    done += 1
        return seen

    conflicts = run_together(*[work] * THREADS)
    errors = raised(conflicts)
    assert not errors, errors
    return model.objects.get(pk=obj.pk).value, sum(conflicts)


@pytest.mark.django_db(transaction=True)
def test_versioned_increments_with_retry_lose_nothing() -> None:
    value, _conflicts = _hammer(Counter, retry=True)
    assert value == THREADS * INCREMENTS
    row = Counter.objects.get()
    # One version per successful save, plus the initial one.
    assert row.version == THREADS * INCREMENTS + 1


@pytest.mark.django_db(transaction=True)
def test_without_checks_the_same_workload_loses_updates() -> None:
    """The control experiment: it shows the race test above can fail."""
    lost = 0
    for _ in range(5):
        value, _ = _hammer(PlainCounter, retry=True)
        PlainCounter.objects.all().delete()
        lost += THREADS * INCREMENTS - value
        if lost:
            break
    assert lost > 0


@pytest.mark.django_db(transaction=True)
def test_disabled_checks_lose_updates_on_a_versioned_model() -> None:
    lost = 0
    for _ in range(5):
        value, conflicts = _hammer(Counter, retry=True, disabled=True)
        assert conflicts == 0
        Counter.objects.all().delete()
        lost += THREADS * INCREMENTS - value
        if lost:
            break
    assert lost > 0
