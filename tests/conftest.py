from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.conf import settings
from django.core.management.commands import flush as flush_command

# Fault tests that reach into their own server session: not possible through a
# transaction pooler (tests/system/test_cluster.py has PgBouncer's own fault test).
_SESSION_BOUND = (
    "tests/system/test_faults.py::TestTerminatedConnection",
    "tests/system/test_faults.py::TestTimeout",
)


# Kept by the flush between transactional tests: post_migrate refills them after each flush
# (and must still run: it recreates any trigger a test dropped), finding them complete instead
# of re-inserting ~80 content types and ~320 permissions each time. Tests only read them.
_KEPT_BY_FLUSH = frozenset({"django_content_type", "auth_permission"})


def _sql_flush_keeping(
    style: Any, connection: Any, reset_sequences: bool = True, allow_cascade: bool = False
) -> list[str]:
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    return connection.ops.sql_flush(
        style,
        [table for table in tables if table not in _KEPT_BY_FLUSH],
        reset_sequences=reset_sequences,
        allow_cascade=allow_cascade,
    )


flush_command.sql_flush = _sql_flush_keeping


if settings.VENDOR == "postgresql":
    from django.db.backends.postgresql.operations import DatabaseOperations

    _truncate = DatabaseOperations.sql_flush

    def _delete_flush(
        self: DatabaseOperations,
        style: Any,
        tables: Sequence[str],
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        """Empty the tables between transactional tests with DELETE, as Django does on MySQL.

        PostgreSQL's TRUNCATE of the suite's ~80 tables replaces every table's and index's
        files: about 0.6 s a test, most of the PostgreSQL legs' time. DELETE of the few rows
        a test leaves costs milliseconds; the foreign keys are deferred to the flush's commit.
        """
        if reset_sequences or allow_cascade:
            return _truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return [f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(t))};" for t in tables]

    DatabaseOperations.sql_flush = _delete_flush  # type: ignore[method-assign]


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
