"""The classes the library's mixins are mixed into, as the type checker sees them.

At run time each base is ``object``, so a mixin adds nothing to the MRO; to
mypy it is the class the mixin is documented to go before, so the mixin's
``self`` and ``super()`` calls are checked against Django's (or DRF's) API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin
    from django.views import View
    from django.views.generic.detail import SingleObjectMixin
    from rest_framework.generics import GenericAPIView
    from rest_framework.serializers import ModelSerializer

    ModelAdminBase = ModelAdmin[Any]

    class ObjectViewBase(SingleObjectMixin[Any], View):
        """A class-based view of one object."""

    APIViewBase = GenericAPIView
    SerializerBase = ModelSerializer
else:
    ModelAdminBase = ObjectViewBase = APIViewBase = SerializerBase = object

__all__ = ["APIViewBase", "ModelAdminBase", "ObjectViewBase", "SerializerBase"]
