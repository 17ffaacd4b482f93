"""Whether a write made in a transaction is still alive: the on-commit marker.

Every record the library keeps of a write inside ``atomic()`` (the version an
instance was given, the aggregate roots a transaction moved) holds one of these
markers, so that a rollback of the transaction or of a savepoint around the
write forgets it.
"""

from __future__ import annotations

from typing import Any


class Commit:
    """The fate of a tracked write: an ``on_commit`` callback at the head of the queue.

    Django forgets the callback when the transaction, or a savepoint around
    the write, rolls back: still being queued means the write is still alive.
    It is queued first, so it runs before any callback of the application,
    which might save the instance again or raise and stop the queue.
    """

    __slots__ = ("committed", "connection", "queue", "savepoints")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.committed = False
        self.queue: Any = None
        self.savepoints: tuple[str, ...] = ()
        if connection is not None:
            self.savepoints = tuple(connection.savepoint_ids)
            connection.run_on_commit.insert(0, (set(connection.savepoint_ids), self, True))
            self.queue = connection.run_on_commit

    def __call__(self) -> None:
        self.committed = True

    def pending(self) -> bool:
        """Return whether the write's transaction is still open (and not rolled back)."""
        if self.connection is None:
            return False
        queue = self.connection.run_on_commit
        if queue is not self.queue:
            # Commit, rollback and savepoint rollback each give the connection a new queue.
            if not any(entry[1] is self for entry in queue):
                return False
            self.queue = queue
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy made elsewhere cannot watch this transaction: unless the write
        # is known to have committed, the copy treats it as rolled back.
        return (_committed_marker if self.committed else Commit, (None,))

    def __copy__(self) -> Commit:
        return self

    def __deepcopy__(self, memo: Any) -> Commit:
        return self


def _committed_marker(connection: Any) -> Commit:
    marker = Commit(None)
    marker.committed = True
    return marker


def commit_marker(connection: Any) -> Commit:
    """Return the marker of the current savepoint of ``connection``: one per savepoint, not per write."""
    marker: Commit | None = getattr(connection, "_concurrency_commit", None)
    savepoints = tuple(connection.savepoint_ids)
    if marker is None or marker.committed or marker.savepoints != savepoints or not marker.pending():
        marker = Commit(connection)
        connection._concurrency_commit = marker
    return marker
