"""retry_on_conflict refreshes every instance it was given.

From the reliability issue (#10): each sequence ends by asserting the outcome (the exception,
the version the instance holds, the row as stored); "another user" is a thread with a connection
of its own that commits its write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from concurrency.api import retry_on_conflict
from tests.demo.models import Stock
from tests.support.races import other_user_writes, stored

pytestmark = pytest.mark.django_db(transaction=True)


# --- 6. retry_on_conflict refreshes every instance it was given ----------------


def _accounts() -> tuple[Stock, Stock]:
    src = Stock.objects.create(name="src", quantity=100)
    dst = Stock.objects.create(name="dst", quantity=0)
    return Stock.objects.get(pk=src.pk), Stock.objects.get(pk=dst.pk)


def _move(src: Stock, dst: Stock, amount: int) -> None:
    src.quantity -= amount
    src.save()
    dst.quantity += amount
    dst.save()


def _by_name(stocks: Any) -> tuple[Stock, Stock]:
    found = {s.name: s for s in stocks}
    return found["src"], found["dst"]


CALLS: dict[str, Callable[[Any, Stock, Stock], Any]] = {
    "positional": lambda f, src, dst: f(src, dst),
    "keywords": lambda f, src, dst: f(src=src, dst=dst),
    "list": lambda f, src, dst: f([src, dst]),
    "tuple": lambda f, src, dst: f((src, dst)),
    "set": lambda f, src, dst: f({src, dst}),
    "dict": lambda f, src, dst: f({"from": src, "to": dst}),
}


class TestRetryRefreshesEveryInstance:
    @pytest.mark.parametrize("call", list(CALLS))
    def test_transfer_debits_the_source_once(self, call: str) -> None:
        src, dst = _accounts()
        other_user_writes(Stock, dst.pk, quantity=1)  # dst is stale before the first attempt
        attempts: list[int] = []

        @retry_on_conflict(attempts=3, delay=0)
        def transfer(*args: Any, **kwargs: Any) -> None:
            attempts.append(1)
            if call in ("positional", "keywords"):
                a, b = (args[0], args[1]) if args else (kwargs["src"], kwargs["dst"])
            elif call == "dict":
                a, b = args[0]["from"], args[0]["to"]
            else:
                a, b = _by_name(args[0])
            _move(a, b, 10)

        CALLS[call](transfer, src, dst)
        assert len(attempts) == 2
        assert stored(Stock, src.pk, "quantity") == (90, 2)
        assert stored(Stock, dst.pk, "quantity") == (11, 3)
        assert (src.quantity, src.version, dst.quantity, dst.version) == (90, 2, 11, 3)

    def test_instances_written_in_a_failed_attempt_start_the_next_from_the_row(self) -> None:
        src, dst = _accounts()
        seen: list[tuple[int, int]] = []

        @retry_on_conflict(attempts=3, delay=0)
        def transfer(a: Stock, b: Stock) -> None:
            seen.append((a.quantity, a.version))
            if len(seen) == 1 and connection.vendor != "sqlite":
                other_user_writes(Stock, b.pk, quantity=1)  # while the attempt is open
            _move(a, b, 10)

        if connection.vendor == "sqlite":
            # SQLite's write lock is held by the attempt: the other user writes before it.
            other_user_writes(Stock, dst.pk, quantity=1)
        transfer(src, dst)
        assert seen == [(100, 1), (100, 1)]
        assert stored(Stock, src.pk, "quantity") == (90, 2)
        assert stored(Stock, dst.pk, "quantity") == (11, 3)
