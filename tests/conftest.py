from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

# Fault tests that reach into their own server session: not possible through a
# transaction pooler (tests/system/test_cluster.py has PgBouncer's own fault test).
_SESSION_BOUND = (
    "tests/system/test_faults.py::TestTerminatedConnection",
    "tests/system/test_faults.py::TestTimeout",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip vendor-only tests on the other databases, saying why."""
    vendor = settings.VENDOR
    for item in items:
        if settings.DB == "postgresql-replica":
            _allow_replica(item)
        for name in ("postgresql", "mysql"):
            if item.get_closest_marker(name) and vendor != name:
                item.add_marker(pytest.mark.skip(reason=f"needs {name}; CONCURRENCY_DB={settings.DB}"))
                break
        else:
            if settings.DB == "pgbouncer" and item.nodeid.startswith(_SESSION_BOUND):
                item.add_marker(
                    pytest.mark.skip(
                        reason="the test itself needs one server session (a backend pid to terminate, "
                        "SET lock_timeout); PgBouncer's transaction pooling does not keep one"
                    )
                )


def _allow_replica(item: pytest.Item) -> None:
    """Let a test that uses ``default`` read through the router from its replica too."""
    cls = getattr(item, "cls", None)
    if cls is not None and hasattr(cls, "databases") and not isinstance(cls.databases, str):
        if "default" in cls.databases and "replica" not in cls.databases:
            cls.databases = {*cls.databases, "replica"}
        return
    marker = item.get_closest_marker("django_db")
    if marker is None:
        return
    databases = marker.kwargs.get("databases") or {"default"}
    if databases != "__all__" and "default" in databases and "replica" not in databases:
        kwargs = {**marker.kwargs, "databases": {*databases, "replica"}}
        item.add_marker(pytest.mark.django_db(*marker.args, **kwargs), append=False)


if settings.DB == "pgbouncer":

    @pytest.fixture(scope="session", autouse=True)
    def _release_pgbouncer_pools(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
        """Let the test databases be dropped through PgBouncer.

        PgBouncer keeps server connections to each database in its pool; PostgreSQL
        refuses to drop a database anyone is connected to. KILL closes that pool.
        """
        yield
        from django.db import connections

        from tests.support import cluster

        connections.close_all()
        for alias in settings.DATABASES:
            cluster.pgbouncer_release(connections[alias].settings_dict["NAME"])
