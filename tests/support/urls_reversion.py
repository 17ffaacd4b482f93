"""An admin site with django-reversion's VersionAdmin over a versioned model."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from reversion.admin import VersionAdmin

from concurrency.forms import ConcurrentForm
from tests.demo.models import Note

site = admin.AdminSite(name="reversion_admin")


@admin.register(Note, site=site)
class NoteAdmin(VersionAdmin):
    form = ConcurrentForm
    fields = ["title", "body", "version"]


urlpatterns = [path("admin/", site.urls)]
