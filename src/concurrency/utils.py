"""Helpers for projects that use the library; test helpers need no pytest.

``fqn``, ``get_classname`` and ``flatten`` are the helpers django-concurrency
offered here, for projects that import them: they give its results wherever
those were coherent (docs/guide/migrating.rst names the two cases that were not).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

from django.db import models, router, transaction

from .api import get_revision_of_object
from .core.options import options_of
from .exceptions import RecordModifiedError

__all__ = ["ConcurrencyTestMixin", "flatten", "fqn", "get_classname", "refetch"]

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


def get_classname(o: Any) -> str:
    """Return the qualified name of a class, function or method, or of the class of any other object.

    ``get_classname(Article)`` and ``get_classname(article)`` are both
    ``"Article"``; ``get_classname(Article.save)`` is ``"Model.save"``. The
    class is the one the object reports (``__class__``), so a lazy object such
    as ``request.user`` gives the class of the object it stands for.
    """
    return _named(o).__qualname__


def fqn(o: Any) -> str:
    """Return the dotted name of a module, class, function or method, or of an object's class.

    ``fqn(Article)`` and ``fqn(article)`` are both ``"myapp.models.Article"``,
    ``fqn(myapp.models)`` is ``"myapp.models"``. Raise ``ValueError`` for an
    object that names no module: a string, a number, ``None``. A lazy object
    such as ``request.user`` gives the name of the object it stands for.
    """
    if inspect.ismodule(o):
        return o.__name__
    if not isinstance(getattr(o, "__module__", None), str):
        raise ValueError(f"Invalid argument `{o}`")
    named = _named(o)
    return f"{named.__module__}.{named.__qualname__}"


def _named(o: Any) -> Any:
    """Return what names ``o``: itself if it is a class, function or method, else its class."""
    if isinstance(o, type) or (callable(o) and isinstance(getattr(o, "__qualname__", None), str)):
        return o
    return o.__class__


def flatten(iterable: Iterable[Any]) -> list[Any]:
    """Return the items of ``iterable`` and of every iterable nested in it, in order, as one list.

    Strings are items, not iterables: ``flatten([["a", (1, 2)], "bc"])`` is
    ``["a", 1, 2, "bc"]``.
    """
    items: list[Any] = []
    for item in iterable:
        if hasattr(item, "__iter__") and not isinstance(item, str):
            items.extend(flatten(item))
        else:
            items.append(item)
    return items


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
        meta = options_of(model)
        if meta is None:
            self.fail(f"{model._meta.label} has no version field")
        self.assertIn(meta.field, model._meta.fields)
