"""URLs of the "changed since you opened it" endpoint for ``{% live_notice %}``.

Include them once: ``path("concurrency/", include("concurrency.urls"))``. The
admin does not need them: each ``ConcurrentModelAdmin`` has its own endpoint.
"""

from __future__ import annotations

from django.urls import path

from .live import version_view

app_name = "concurrency"

urlpatterns = [
    path("version/<str:label>/<str:pk>/", version_view, name="version"),
]
