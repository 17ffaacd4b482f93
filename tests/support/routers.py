"""The routers of the cluster test settings.

``PrimaryReplicaRouter`` (``postgresql-replica``) is the recipe of
docs/guide/cluster.rst: writes go to the primary; reads go to the replica,
except inside a transaction on the primary, where they must see the
transaction's own writes and where a retry must read the row as the primary
has it (``retry_on_conflict`` runs each attempt in ``atomic()``). The ``other``
test database has no replica and keeps its own reads and writes.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

PRIMARY = "default"
REPLICA = "replica"


class PrimaryReplicaRouter:
    def _pinned(self, hints: dict[str, Any]) -> str | None:
        instance = hints.get("instance")
        db = getattr(getattr(instance, "_state", None), "db", None)
        return db if db not in (None, PRIMARY, REPLICA) else None

    def db_for_read(self, model: Any, **hints: Any) -> str:
        pinned = self._pinned(hints)
        if pinned:
            return pinned
        return PRIMARY if connections[PRIMARY].in_atomic_block else REPLICA

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self._pinned(hints) or PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return db != REPLICA


class GaleraNodesRouter:
    """The ``galera`` test setting: ``node2`` and ``node3`` are the same database as ``default``.

    Schema changes (migrations, triggers) go through one node; Galera replicates them.
    """

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db in ("node2", "node3") else None
