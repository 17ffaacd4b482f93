from __future__ import annotations

from django.urls import path

from .admin import plain_history_site, site
from .api import api

urlpatterns = [
    path("admin/", site.urls),
    path("plain-history-admin/", plain_history_site.urls),
    path("ninja/", api.urls),
]
