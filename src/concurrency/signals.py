"""Signals sent by the library."""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["conflict_detected"]

#: Sent when a versioned save or delete is refused, before the exception is
#: raised. Arguments: ``sender`` (the model class), ``instance``, ``version``
#: (what the caller had), ``db_version`` (what the database holds, ``None`` if
#: the row is gone) and ``deleted``.
conflict_detected = Signal()
