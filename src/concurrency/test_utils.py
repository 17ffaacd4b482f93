"""Test helpers under the module name django-concurrency 2.8 moved them to.

The helpers live in :mod:`concurrency.utils` and need no pytest.
"""

from __future__ import annotations

from .utils import ConcurrencyTestMixin

__all__ = ["ConcurrencyTestMixin"]
