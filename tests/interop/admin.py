"""Admins combining ours with other libraries' admin classes (mounted by tests/interop/urls.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV
from polymorphic.admin import PolymorphicChildModelAdmin, PolymorphicParentModelAdmin
from simple_history.admin import SimpleHistoryAdmin

from concurrency.admin import ConcurrentModelAdmin

from .models import ArtProject, Book, Document, Project, ResearchProject
from .resources import CheckedBookResource

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


class ConcurrentHistoryAdmin(ConcurrentModelAdmin, SimpleHistoryAdmin):
    """The recipe of docs/guide/interop.rst: a revert is checked against the version on screen.

    simple-history's revert form edits the history row's instance, which holds
    the version that row recorded: left so, every revert but the last would be
    refused as stale. The form is given the row's current version instead, so
    the revert is refused only if the record changes while the page is open.
    """

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None and getattr(obj, "_history", None) is not None:  # a history row's instance
            field = obj._concurrencymeta.field
            current = type(obj)._base_manager.filter(pk=obj.pk).values_list(field.attname, flat=True)
            setattr(obj, field.attname, current.first())
        return super().get_form(request, obj, change, **kwargs)


@admin.register(Document, site=site)
class DocumentAdmin(ConcurrentHistoryAdmin):
    pass


@admin.register(Book, site=site)
class BookAdmin(ConcurrentModelAdmin, ImportExportModelAdmin):
    resource_classes = [CheckedBookResource]
    formats = [CSV]


# Without the recipe, for comparison.
plain_history_site = admin.AdminSite(name="interop_plain_history")


@admin.register(Document, site=plain_history_site)
class PlainHistoryDocumentAdmin(ConcurrentModelAdmin, SimpleHistoryAdmin):
    pass
