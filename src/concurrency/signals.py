"""Signals sent by the library, and a ready-made receiver that logs them."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

__all__ = ["conflict_detected", "log_conflict"]

#: Sent when a versioned save or delete is refused, before the exception is
#: raised, and by a versioned ``bulk_update()`` once per refused row, after
#: its transaction has ended. Arguments: ``sender`` (the model class),
#: ``instance``, ``version`` (what the caller had), ``db_version`` (what the
#: database holds, ``None`` if the row is gone) and ``deleted``.
conflict_detected = Signal()

logger = logging.getLogger("concurrency")


def log_conflict(
    sender: type[Any],
    instance: Any,
    version: Any,
    db_version: Any,
    deleted: bool,
    **kwargs: Any,
) -> None:
    """Log a refused write to the ``concurrency`` logger at WARNING level.

    Opt in with ``conflict_detected.connect(log_conflict)``, for example in
    an ``AppConfig.ready()``. The fields are also passed as ``extra`` for
    structured log handlers.
    """
    logger.warning(
        "Refused a stale write of %s pk=%s: had version %s, database has %s",
        sender._meta.label,
        instance.pk,
        version,
        "none (row deleted)" if deleted else db_version,
        extra={
            "model": sender._meta.label,
            "pk": instance.pk,
            "version": version,
            "db_version": db_version,
            "deleted": deleted,
        },
    )
