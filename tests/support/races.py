"""The race harness: other users as threads, each with database connections of its own.

A race test starts its users together (a barrier), lets each one run to the end, and
then asserts on what each one got back and on the rows as stored. Every thread closes
its connections, so the test database can be dropped, and a thread that hangs fails
the test instead of hanging the suite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

WAIT = 60.0  # seconds a user may wait for the others: generous, for a loaded machine


def run_together(*users: Callable[[], Any], wait: float = WAIT, join: float | None = None) -> list[Any]:
    """Run each user in a thread of its own, all released at once; return what each returned or raised.

    The results are in the order of ``users``; an exception a user raised is its result.
    ``join`` bounds the whole run (default: twice ``wait``, at least 300 s for long workloads).
    """
    start = threading.Barrier(len(users), timeout=wait)
    outcomes: list[Any] = [None] * len(users)

    def run(index: int, user: Callable[[], Any]) -> None:
        try:
            start.wait()
            outcomes[index] = user()
        except BaseException as exc:
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n, user), daemon=True) for n, user in enumerate(users)]
    for thread in threads:
        thread.start()
    limit = join if join is not None else max(2 * wait, 300.0)
    for thread in threads:
        thread.join(limit)
        assert not thread.is_alive(), "a thread of the race hung"
    return outcomes


class Background(threading.Thread):
    """Another user in a thread of their own while the test goes on; keeps what it returned or raised."""

    def __init__(self, target: Callable[[], Any], wait: float = WAIT) -> None:
        super().__init__(daemon=True)
        self._work = target
        self._wait = wait
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._work()
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()

    def finish(self) -> Any:
        """Start, wait, and return what the target returned or raised."""
        self.start()
        return self.outcome()

    def outcome(self) -> Any:
        """Wait for the thread; return what the target returned or raised."""
        self.join(self._wait)
        assert not self.is_alive(), "worker thread hung"
        return self.error or self.result


def raised(outcomes: list[Any]) -> list[BaseException]:
    """The exceptions among the outcomes of ``run_together``."""
    return [outcome for outcome in outcomes if isinstance(outcome, BaseException)]


def as_other_user(work: Callable[[], Any], wait: float = WAIT) -> Any:
    """Run ``work`` in a thread with a connection of its own (committing as it goes); return its result."""
    [outcome] = run_together(work, join=wait)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def other_user_writes(model: type, pk: Any, **changes: Any) -> int:
    """Have another user load the row, change it and commit; return the version it committed."""

    def write() -> int:
        row = model._default_manager.get(pk=pk)
        for name, value in changes.items():
            setattr(row, name, value)
        row.save()
        return row.version

    return as_other_user(write)


def stored(model: type, pk: Any, *names: str) -> tuple[Any, ...]:
    """The row's ``names`` and version as the database holds them."""
    return tuple(model._base_manager.values_list(*names, "version").get(pk=pk))
