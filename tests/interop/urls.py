from __future__ import annotations

from django.urls import path

from .admin import site
from .api import api

urlpatterns = [
    path("admin/", site.urls),
    path("ninja/", api.urls),
]
