"""The write path: private, one module per concept.

- ``options``: per-model options and the switches that turn checks and increments off.
- ``versions``: the values a version can take, and reading a row's current version.
- ``update``: the conditional UPDATE (and the checked delete) every write path calls.
- ``tracking``: the version an instance holds, given back when its write rolls back.
- ``commit``: the marker that tells whether a write's transaction is still alive.
- ``rows``: the row an instance was loaded with (``ConditionalVersionField``).
- ``roots``: aggregate roots moved in the current transaction.
- ``watch``: the compiler hook every ORM INSERT, UPDATE and DELETE passes.
- ``usable``: a refused save leaves the caller's transaction usable.
- ``refusal``: the error, the ``conflict_detected`` signal and the callback of a refused write.
- ``bulk``: versioned ``bulk_update()``; ``upserts``: refusing upserts of versioned rows.
- ``model``: what a model gets when a version field is added to it.

Importing the package installs the compiler hook and the upsert guard, once.
"""

from . import upserts, watch  # noqa: F401  (installs the hooks)
