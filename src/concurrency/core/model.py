"""What a model gets when a version field is added to it (and its proxies and children)."""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.db.models.signals import class_prepared, pre_delete

from .options import (
    ConcurrencyOptions,
    VersionFieldHooks,
    declared_options,
    options_of,
    set_options,
    version_of,
)
from .update import check_delete, versioned_do_update
from .usable import keep_transaction_usable


def manage(model: Any, field: VersionFieldHooks) -> None:
    """Make ``model`` (concrete, or a proxy or child of one) versioned."""
    set_options(model, ConcurrencyOptions(model, field))
    model._do_update = versioned_do_update
    model.get_concurrency_version = version_of
    keep_transaction_usable(model)
    prepare = getattr(field, "prepare_model", None)
    if prepare is not None:
        prepare(model)
    if model._meta.apps is not global_apps:
        # A historical model rendered by migrations: saves are checked, but
        # deletes are not, so that long migrate runs leave no receivers behind.
        return
    pre_delete.connect(
        check_delete, sender=model, dispatch_uid=f"concurrency.check_delete.{model._meta.label}"
    )


def prepare_subclass(sender: Any, **kwargs: Any) -> None:
    """Give proxies and multi-table children of versioned models their own options."""
    if sender._meta.abstract or declared_options(sender) is not None:
        return
    inherited = options_of(sender)
    if inherited is not None:
        manage(sender, inherited.field)


# Connected at import time, not in AppConfig.ready(): models that use the
# version fields are prepared while their module imports them, before ready().
class_prepared.connect(prepare_subclass, dispatch_uid="concurrency.prepare_subclass")
