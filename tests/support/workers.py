"""Work done in child processes by tests/system/test_faults.py.

Children are started with the ``spawn`` method: a fresh interpreter, never a
fork of the multi-threaded test process (which can deadlock on a lock some
other thread held at fork time). So this module imports nothing from Django at
the top; each entry point first sets Django up against the test database whose
name the parent passes in (test database names carry
``CONCURRENCY_TEST_SUFFIX`` and are only known to the running test).
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any


def setup_django(database: str) -> None:
    """Configure Django in this process and point the default connection at ``database``."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.db import connections

    connections["default"].settings_dict["NAME"] = database


def die_after_update(database: str, pk: int, updated: Any, hold: float) -> None:
    """Update the row, then hang before committing until killed."""
    try:
        setup_django(database)
        from django.db import transaction

        from tests.demo.models import Counter

        with transaction.atomic():
            row = Counter.objects.get(pk=pk)
            row.value += 100
            row.save()
            updated.set()
            time.sleep(hold)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(1)


def hammer(database: str, pk: int, acknowledged: Any, index: int) -> None:
    """Increment with retry forever, counting committed increments, until killed."""
    try:
        setup_django(database)
        from django.db import OperationalError, connection, transaction

        from concurrency.exceptions import RecordModifiedError
        from tests.demo.models import Counter

        while True:
            try:
                with transaction.atomic():
                    row = Counter.objects.get(pk=pk)
                    row.value += 1
                    row.save()
                acknowledged[index] += 1
            except RecordModifiedError:
                pass
            except OperationalError:
                # SQLite's busy timeout, when a killed sibling left a hot journal
                # behind: nothing was committed, so go on.
                if connection.vendor != "sqlite":
                    raise
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(1)


def increment_locking_on_retry(database: str, pk: int, increments: int, start: Any, results: Any) -> None:
    """Increment the row through retry_on_conflict(lock_on_retry=True) with two attempts.

    Reports (conflicts seen, error or None): an escalated attempt that was
    refused again would exhaust the two attempts and end with the error.
    """
    conflicts = 0
    failure = None
    try:
        setup_django(database)
        from django.db import connection

        from concurrency.retry import retry_on_conflict
        from concurrency.signals import conflict_detected
        from tests.demo.models import Counter

        def count(**kwargs: Any) -> None:
            nonlocal conflicts
            conflicts += 1

        conflict_detected.connect(count, sender=Counter, weak=False)

        @retry_on_conflict(attempts=2, lock_on_retry=True)
        def increment() -> None:
            row = Counter.objects.get(pk=pk)
            row.value += 1
            row.save()

        connection.ensure_connection()
        start.wait()
        for _ in range(increments):
            increment()
        connection.close()
    except BaseException:
        failure = traceback.format_exc()
    results.put((conflicts, failure))
