"""One disable_concurrency / concurrency_disable_increment object entered from two threads or tasks.

From the reliability issue (#10): each sequence ends by asserting the outcome (the exception,
the version the instance holds, the row as stored); "another user" is a thread with a connection
of its own that commits its write.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from concurrency.api import concurrency_disable_increment, disable_concurrency
from concurrency.exceptions import RecordModifiedError
from tests.demo.models import Counter
from tests.support.races import WAIT, other_user_writes, run_together, stored

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]


# --- 4. One toggle object entered from two threads or tasks -----------------------

DISABLED_COUNTER = disable_concurrency(Counter)
FROZEN_COUNTER = concurrency_disable_increment(Counter)


def _interleave(work: Callable[[int, Callable[[], None]], Any]) -> list[Any]:
    """Run ``work(index, step)`` in two threads; ``step()`` waits until both reach it.

    Both threads enter the toggle, then the first leaves it while the second
    is still inside, then the second leaves.
    """
    barrier = threading.Barrier(2, timeout=WAIT)

    def user(index: int) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return work(index, barrier.wait)
            except BaseException:
                barrier.abort()
                raise

        return run

    return run_together(user(0), user(1))


class TestSharedToggle:
    def test_disable_concurrency_object_entered_from_two_threads(self) -> None:
        pks = [Counter.objects.create(name=f"c{n}").pk for n in range(2)]
        stale_inside = [Counter.objects.get(pk=pk) for pk in pks]
        stale_after = [Counter.objects.get(pk=pk) for pk in pks]
        for pk in pks:
            other_user_writes(Counter, pk, value=5)

        def work(index: int, step: Callable[[], None]) -> str:
            with DISABLED_COUNTER:
                step()  # both inside
                stale_inside[index].value = 10 + index
                stale_inside[index].save()  # checks are off here
                step()
                if index == 1:
                    step()  # thread 0 leaves first
            if index == 0:
                step()
            stale_after[index].value = 20 + index
            try:
                stale_after[index].save()
            except RecordModifiedError:
                return "refused"
            return "accepted"

        assert _interleave(work) == ["refused", "refused"]
        assert [stored(Counter, pk, "value") for pk in pks] == [(10, 3), (11, 3)]

    def test_disable_increment_object_entered_from_two_threads(self) -> None:
        pks = [Counter.objects.create(name=f"c{n}").pk for n in range(2)]
        current = [Counter.objects.get(pk=pk) for pk in pks]
        stale = [Counter.objects.get(pk=pk) for pk in pks]

        def work(index: int, step: Callable[[], None]) -> tuple[int, int, str]:
            with FROZEN_COUNTER:
                step()
                current[index].value = 1
                current[index].save()
                kept = current[index].version
                step()
                if index == 1:
                    step()
            if index == 0:
                step()
            current[index].value = 2
            current[index].save()  # increments again
            stale[index].value = 3
            try:
                stale[index].save()
            except RecordModifiedError:
                return kept, current[index].version, "refused"
            return kept, current[index].version, "accepted"

        assert _interleave(work) == [(1, 2, "refused"), (1, 2, "refused")]
        assert [stored(Counter, pk, "value") for pk in pks] == [(2, 2), (2, 2)]

    def test_one_toggle_object_in_two_asyncio_tasks(self) -> None:
        from asgiref.sync import sync_to_async

        pks = [Counter.objects.create(name=f"c{n}").pk for n in range(2)]
        stale = [Counter.objects.get(pk=pk) for pk in pks]
        for pk in pks:
            other_user_writes(Counter, pk, value=5)

        def save(instance: Counter) -> str:
            try:
                instance.save()
            except RecordModifiedError:
                return "refused"
            finally:
                connection.close()
            return "accepted"

        async def main() -> list[Any]:
            toggles = (DISABLED_COUNTER, FROZEN_COUNTER)
            inside = {toggle: asyncio.Barrier(2) for toggle in toggles}
            left = {toggle: asyncio.Event() for toggle in toggles}

            async def task(index: int) -> str:
                for toggle in toggles:
                    with toggle:
                        await asyncio.wait_for(inside[toggle].wait(), WAIT)
                        if index == 1:  # task 0 leaves while task 1 is inside
                            await asyncio.wait_for(left[toggle].wait(), WAIT)
                    if index == 0:
                        left[toggle].set()
                stale[index].value = 9
                return await sync_to_async(save)(stale[index])

            return await asyncio.gather(task(0), task(1), return_exceptions=True)

        assert asyncio.run(main()) == ["refused", "refused"]
        assert [stored(Counter, pk, "value") for pk in pks] == [(5, 2), (5, 2)]
