"""Plain Django admins of the demo models, for comparisons with ConcurrentModelAdmin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from .demo.admin import ArticleAdmin, publish
from .demo.models import Article

site = admin.AdminSite(name="plain")


@admin.register(Article, site=site)
class PlainArticleAdmin(admin.ModelAdmin):
    list_display = ArticleAdmin.list_display
    list_display_links = ArticleAdmin.list_display_links
    list_editable = ArticleAdmin.list_editable
    actions = [publish]


urlpatterns = [
    path("admin/", admin.site.urls),
    path("plain-admin/", site.urls),
]
