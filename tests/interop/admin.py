"""Admins combining ours with other libraries' admin classes (mounted by tests/interop/urls.py)."""

from __future__ import annotations

from django.contrib import admin
from polymorphic.admin import PolymorphicChildModelAdmin, PolymorphicParentModelAdmin

from concurrency.admin import ConcurrentModelAdmin

from .models import ArtProject, Project, ResearchProject

site = admin.AdminSite(name="interop")


class ProjectChildAdmin(ConcurrentModelAdmin, PolymorphicChildModelAdmin):
    base_model = Project


@admin.register(ArtProject, site=site)
class ArtProjectAdmin(ProjectChildAdmin):
    pass


@admin.register(ResearchProject, site=site)
class ResearchProjectAdmin(ProjectChildAdmin):
    pass


@admin.register(Project, site=site)
class ProjectAdmin(ConcurrentModelAdmin, PolymorphicParentModelAdmin):
    base_model = Project
    child_models = (ArtProject, ResearchProject)
    list_display = ("name", "version")
    actions = ["rename"]

    @admin.action(description="Mark selected projects as archived")
    def rename(self, request, queryset):  # type: ignore[no-untyped-def]
        for project in queryset:
            project.name = f"{project.name} (archived)"
            project.save()
