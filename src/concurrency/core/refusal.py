"""Refusing a write: the error, the ``conflict_detected`` signal and ``CONCURRENCY_CALLBACK``.

Every path that refuses a write of a row (a save, a checked delete, a bulk
write, ``verify_unchanged``, a rolled-back ``transaction.atomic``) reports it
here, so that receivers of the signal and the project's callback hear of each
refusal once, whichever path found it.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.utils.module_loading import import_string

from ..conf import conf
from ..exceptions import RecordDeletedError, RecordModifiedError
from ..signals import conflict_detected
from .options import increment_switched_off
from .versions import current_version

DEFAULT_CALLBACK = "concurrency.views.callback"


def announce(instance: Any, version: Any, db_version: Any, deleted: bool) -> None:
    """Tell ``conflict_detected`` receivers and ``CONCURRENCY_CALLBACK`` of a refused write of ``instance``.

    The default callback raises ``RecordModifiedError``, which every path
    raises (or reports) anyway, so it is not called; a project's own callback
    may raise its own exception, and returning never turns the refused write
    into a success.
    """
    conflict_detected.send(
        sender=type(instance), instance=instance, version=version, db_version=db_version, deleted=deleted
    )
    if conf.CALLBACK != DEFAULT_CALLBACK:
        callback = import_string(conf.CALLBACK) if isinstance(conf.CALLBACK, str) else conf.CALLBACK
        callback(instance)


def conflict(
    instance: Any,
    version: Any,
    using: str | None = None,
    *,
    message: str | None = None,
    current: list[Any] | None = None,
) -> RecordModifiedError:
    """Announce a refused write of ``instance`` at ``version`` and return its error.

    ``current`` is ``[version]`` of the row as the database holds it, ``[]``
    when it is gone; read from ``using`` (the database the write goes to) when not given.
    """
    if current is None:
        current = current_version(instance, using)
    cls = RecordModifiedError if current else RecordDeletedError
    messages: tuple[Any, ...] = ()
    if message is not None:
        messages = (message,)
    elif current and increment_switched_off(instance):
        # django-concurrency's switch also skipped the check: say why it did not here.
        messages = (cls.increment_disabled_message,)
    error = cls(*messages, target=instance, version=version, db_version=current[0] if current else None)
    announce(instance, version, error.db_version, not current)
    return error


def raise_conflict(instance: Any, version: Any, using: str) -> NoReturn:
    """Raise the error for a refused write of ``instance`` at ``version``."""
    raise conflict(instance, version, using)
