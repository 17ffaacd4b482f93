"""Wrapping a method of a model class, or of Django, once: the one way the library patches a class.

Each wrapper is remembered with its kind, so a subclass that inherits a
wrapped method is not wrapped again, and the checks can tell the library's
wrappers from a project's own overrides.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

_wrappers: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _function(method: Any) -> Any:
    # A bound method or a classmethod: the function it calls.
    return getattr(method, "__func__", method)


def is_wrapper(method: Any, kind: str) -> bool:
    """Return whether ``method`` is a wrapper of ``kind`` made by ``wrap_once``."""
    return _wrappers.get(_function(method)) == kind


def wrap_once(owner: Any, name: str, kind: str, make: Callable[[Any], Any]) -> None:
    """Set ``owner.<name>`` to ``make(<the current one>)``, unless that is already a ``kind`` wrapper."""
    current = getattr(owner, name)
    if is_wrapper(current, kind):
        return
    wrapper = make(current)
    _wrappers[_function(wrapper)] = kind
    setattr(owner, name, wrapper)
