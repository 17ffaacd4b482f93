"""Admins whose ``get_queryset()`` hides rows: what a user may not see, a conflict must not reveal.

``scoped`` runs the library's admin (``ConflictResolutionMixin`` + ``ConcurrentModelAdmin``);
``django`` is plain Django's ``ModelAdmin`` with the same ``get_queryset()``, to compare with.
Rows whose title starts with "Hidden" are outside both.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path

from concurrency.admin import ConcurrentModelAdmin
from concurrency.resolution import ConflictResolutionMixin
from tests.demo.admin import ArticleAdmin, publish
from tests.demo.models import Article, Category, Item

HIDDEN = "Hidden"


class _Scoped:
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).exclude(title__startswith=HIDDEN)  # type: ignore[misc,no-any-return]


site = admin.AdminSite(name="scoped")


@admin.register(Article, site=site)
class ScopedArticleAdmin(_Scoped, ConflictResolutionMixin, ConcurrentModelAdmin):
    list_display = ArticleAdmin.list_display
    list_display_links = ArticleAdmin.list_display_links
    list_editable = ArticleAdmin.list_editable
    actions = [publish]
    fieldsets = ArticleAdmin.fieldsets


django_site = admin.AdminSite(name="django")


@admin.register(Article, site=django_site)
class DjangoArticleAdmin(_Scoped, admin.ModelAdmin):
    list_display = ArticleAdmin.list_display
    list_display_links = ArticleAdmin.list_display_links
    list_editable = ArticleAdmin.list_editable
    actions = [publish]


class ItemInlineWithoutVersion(admin.TabularInline):
    model = Item
    fields = ["name"]


class ItemInlineWithVersion(admin.TabularInline):
    model = Item
    fields = ["name", "version"]


def inline_admin(inline: Any, base: Any = ConcurrentModelAdmin) -> admin.ModelAdmin:
    """Return an admin of ``Category`` with ``inline``, registered on no site."""
    cls = type("CategoryAdmin", (base,), {"inlines": [inline], "__module__": __name__})
    return cls(Category, admin.AdminSite(name="inline_checks"))  # type: ignore[no-any-return]


urlpatterns = [
    path("scoped/", site.urls),
    path("django/", django_site.urls),
    path("admin/", admin.site.urls),
]
