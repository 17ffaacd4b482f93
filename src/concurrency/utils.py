"""Helpers for projects that use the library; test helpers need no pytest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from django.db import models, router, transaction

from .api import get_revision_of_object
from .exceptions import RecordModifiedError

__all__ = ["ConcurrencyTestMixin", "refetch"]

M = TypeVar("M", bound=models.Model)


def refetch(instance: M) -> M:
    """Return a new copy of ``instance`` loaded from the database by primary key.

    The row is read from the database ``instance`` came from, through the
    model's base manager (as ``refresh_from_db()`` does), so a default
    manager's filters do not hide it. Raise ``DoesNotExist`` if the row is gone.
    """
    model = type(instance)
    using = instance._state.db or router.db_for_read(model, instance=instance)
    return model._base_manager.using(using).get(pk=instance.pk)


class ConcurrencyTestMixin:
    """Add three tests to a ``TestCase`` that check a model is really versioned.

    Their main use is to catch a ``save()`` override somewhere in the model's
    inheritance that bypasses the check::

        from concurrency.utils import ConcurrencyTestMixin
        from myproject.models import MyModel

        class MyModelTest(ConcurrencyTestMixin, TestCase):
            concurrency_model = MyModel
            concurrency_kwargs = {"username": "test"}

    ``concurrency_kwargs`` must be enough to create a row (``get_or_create``).
    """

    concurrency_model: type[models.Model] | None = None
    concurrency_kwargs: dict[str, Any] = {}

    # unittest.TestCase supplies these; declared for type checkers only.
    assertTrue: Any  # noqa: N815
    assertFalse: Any  # noqa: N815
    assertEqual: Any  # noqa: N815
    assertNotEqual: Any  # noqa: N815
    assertIn: Any  # noqa: N815
    assertRaises: Any  # noqa: N815
    fail: Callable[[str], NoReturn]

    def _get_concurrency_target(self, **kwargs: Any) -> models.Model:
        """Return a fresh copy of the test row on every call (creating it the first time)."""
        model = self._concurrency_model()
        values = {**self.concurrency_kwargs, **kwargs}
        obj, _created = model._default_manager.get_or_create(**values)
        return model._default_manager.get(pk=obj.pk)

    def _concurrency_model(self) -> type[models.Model]:
        if self.concurrency_model is None:
            self.fail(f"{type(self).__name__}.concurrency_model is not set")
        assert self.concurrency_model is not None
        return self.concurrency_model

    def test_concurrency_conflict(self) -> None:
        """A save from a copy loaded before another save is refused."""
        target = self._get_concurrency_target()
        target_copy = self._get_concurrency_target()
        v1 = get_revision_of_object(target)
        v2 = get_revision_of_object(target_copy)
        self.assertEqual(v1, v2, f"two fresh copies of one row have different versions ({v1}/{v2})")
        target.save()
        self.assertNotEqual(
            get_revision_of_object(target), v1, "save() did not change the version: is it versioned?"
        )
        using = router.db_for_write(type(target_copy), instance=target_copy)
        with self.assertRaises(RecordModifiedError), transaction.atomic(using=using):
            target_copy.save()

    def test_concurrency_safety(self) -> None:
        """A new, unsaved instance has no version yet."""
        target = self._concurrency_model()()
        self.assertFalse(get_revision_of_object(target))

    def test_concurrency_management(self) -> None:
        """The model is under concurrency control and its version field is a real field."""
        model = self._concurrency_model()
        options = getattr(model, "_concurrencymeta", None)
        if options is None:
            self.fail(f"{model._meta.label} has no version field")
        self.assertIn(options.field, model._meta.fields)
