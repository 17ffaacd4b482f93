"""The stable functional API."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.db import models

from .core.model import prepare_subclass
from .core.options import (
    ConcurrencyOptions,
    Toggled,
    checks_off,
    increments_off,
    options,
    options_of,
    pop,
    push,
)
from .core.verify import VerifyUnchanged, verify
from .core.versions import current_version
from .exceptions import RecordModifiedError
from .retry import retry_on_conflict

__all__ = [
    "RecordModifiedError",
    "apply_concurrency_check",
    "concurrency_disable_increment",
    "disable_concurrency",
    "get_revision_of_object",
    "get_version",
    "get_version_fieldname",
    "is_changed",
    "retry_on_conflict",
    "verify_unchanged",
]

F = TypeVar("F", bound=Callable[..., Any])


def _options(obj: Any) -> ConcurrencyOptions:
    try:
        return options(obj)
    except AttributeError:
        raise TypeError(f"{obj!r} is not under concurrency control (it has no version field)") from None


def get_version_fieldname(obj: models.Model | type[models.Model]) -> str:
    """Return the attribute name of the version field of a model or instance."""
    return _options(obj).field.attname


def get_revision_of_object(obj: models.Model) -> Any:
    """Return the version an instance holds."""
    return getattr(obj, get_version_fieldname(obj))


def is_changed(obj: models.Model) -> bool:
    """Return whether the row has changed (or gone) since ``obj`` was loaded. One query."""
    field = _options(obj).field
    return current_version(obj) != [getattr(obj, field.attname)]


def get_version(model_instance: models.Model, version: Any) -> models.Model:
    """Return the row of ``model_instance`` if it still has ``version``.

    No history is kept: this raises ``DoesNotExist`` for any other version.
    """
    model = type(model_instance)
    attname = get_version_fieldname(model_instance)
    return model._base_manager.get(pk=model_instance.pk, **{attname: version})


def apply_concurrency_check(
    model: type[models.Model], fieldname: str, versionclass: type[models.Field]
) -> None:
    """Add a version field to a model you do not own, such as ``auth.Group``.

    The column must exist: add it with a migration of your own (see the
    documentation). Does nothing if the model is already versioned.

    Proxies and multi-table children of ``model`` declared before the call
    (in any app's models.py, when it runs in ``AppConfig.ready()``) are
    versioned too: their cached field lists are refreshed and their saves and
    deletes checked, as for subclasses declared afterwards.
    """
    if options_of(model) is not None:
        return
    versionclass().contribute_to_class(model, fieldname)
    # Django expires the field caches of ``model`` only (and the registry's
    # clear_cache() does nothing before the registry is ready, that is during
    # ready()): its subclasses would keep field lists without the new field.
    model._meta.apps.clear_cache()
    pending = list(model.__subclasses__())
    while pending:
        subclass = pending.pop(0)
        if getattr(subclass, "_meta", None) is None or subclass._meta.abstract:
            continue
        subclass._meta._expire_cache()  # type: ignore[attr-defined]
        prepare_subclass(subclass)
        pending.extend(subclass.__subclasses__())


class _Toggle:
    """A context manager, decorator and start()/finish() pair over a context variable.

    Nothing about a use is kept on this object: ``start()`` adds an entry
    owned by it to the context variable, ``finish()`` removes the newest such
    entry from the current context's value. So one instance, made once at
    module level, can be entered nested, repeatedly, and from several threads
    or asyncio tasks at once; each thread or task sees only its own entries.
    """

    var: contextvars.ContextVar[tuple[Any, ...]]

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def __enter__(self) -> _Toggle:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.finish()

    def start(self) -> None:
        """Switch off; pair with ``finish()`` in the same thread or task."""
        push(self.var, Toggled(self.target, self))

    def finish(self) -> None:
        """Undo the newest ``start()`` of this object in the current thread or task."""
        pop(self.var, self)

    def __call__(self, func: F) -> F:
        target = self.target
        cls = type(self)

        if _is_async(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with cls(target):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with cls(target):
                return func(*args, **kwargs)

        return cast(F, wrapper)


def _is_async(func: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(func)


class disable_concurrency(_Toggle):  # noqa: N801 - public name kept from the seed API
    """Switch version checks off: for everything (no argument), a model, or an instance.

    Writes still bump the version. A model covers its proxies and subclasses.
    Passing an object that is not versioned does nothing.
    """

    var = checks_off


class concurrency_disable_increment(_Toggle):  # noqa: N801 - public name kept from the seed API
    """Keep versions unchanged by writes of a model or instance; writes are still checked."""

    var = increments_off


def verify_unchanged(*instances: models.Model) -> VerifyUnchanged:
    """Check that the rows of ``instances`` still hold their versions, and lock them.

    For rows a decision was read from but that are not written (write skew):
    one locking read per model (``SELECT pk, version … WHERE pk IN (…) FOR
    SHARE``; SQLite takes its write lock) verifies them and keeps them from
    changing until the transaction ends, writing nothing. A changed row raises
    ``RecordModifiedError``, a deleted one ``RecordDeletedError``, naming the
    first such instance; ``retry_on_conflict`` retries the former. An instance
    loaded without its version raises ``VersionNotLoadedError``, as its save
    would. Call it inside ``atomic()``; outside a transaction the rows are
    locked only for the statement.

    The value returned is also a context manager: ``with verify_unchanged(a, b):``
    runs its block in ``atomic()`` and verifies the instances again at exit,
    before the block's writes commit.
    """
    verify(instances)
    return VerifyUnchanged(instances)
