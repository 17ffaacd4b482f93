"""Django REST framework integration (the ``[drf]`` extra).

Import it only when ``djangorestframework`` is installed; nothing else in
``concurrency`` imports it.
"""

from __future__ import annotations

from .serializers import VersionConflict, VersionedSerializerMixin, VersionField
from .views import VersionedViewMixin

__all__ = ["VersionConflict", "VersionField", "VersionedSerializerMixin", "VersionedViewMixin"]
