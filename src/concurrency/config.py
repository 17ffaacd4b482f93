"""The settings object under the module name django-concurrency used.

One implementation lives in :mod:`concurrency.conf`; this module re-exports it
so that ``from concurrency.config import conf`` and the list_editable policy
constants keep working for projects switching over.
"""

from __future__ import annotations

from .conf import (
    CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL,
    CONCURRENCY_LIST_EDITABLE_POLICY_SILENT,
    LIST_EDITABLE_POLICY_ABORT_ALL,
    LIST_EDITABLE_POLICY_SILENT,
    conf,
)

__all__ = [
    "CONCURRENCY_LIST_EDITABLE_POLICY_ABORT_ALL",
    "CONCURRENCY_LIST_EDITABLE_POLICY_SILENT",
    "LIST_EDITABLE_POLICY_ABORT_ALL",
    "LIST_EDITABLE_POLICY_SILENT",
    "conf",
]
