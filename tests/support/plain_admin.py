"""Plain Django admins of the demo models, for comparisons with ConcurrentModelAdmin.

``bare`` is the demo's Article admin without ``ConflictResolutionMixin``: a
refused change form is shown again with an error.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from concurrency.admin import ConcurrentModelAdmin
from tests.demo.admin import ArticleAdmin, publish
from tests.demo.models import Article

site = admin.AdminSite(name="plain")


@admin.register(Article, site=site)
class PlainArticleAdmin(admin.ModelAdmin):
    list_display = ArticleAdmin.list_display
    list_display_links = ArticleAdmin.list_display_links
    list_editable = ArticleAdmin.list_editable
    actions = [publish]


bare = admin.AdminSite(name="bare")


@admin.register(Article, site=bare)
class BareArticleAdmin(ConcurrentModelAdmin):
    fieldsets = ArticleAdmin.fieldsets


urlpatterns = [
    path("admin/", admin.site.urls),
    path("plain-admin/", site.urls),
    path("bare-admin/", bare.urls),
]
