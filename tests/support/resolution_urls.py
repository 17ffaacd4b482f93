"""An admin site with conflict resolution, for tests/admin/test_resolution.py."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import path

from concurrency.admin import ConcurrentModelAdmin
from concurrency.fields import VersionField
from concurrency.resolution import ConflictResolutionMixin
from tests.demo.models import Article, Category, Item, Stock

site = admin.AdminSite(name="resolution")

# A plain ModelAdmin would render the signed version with the admin's
# <input type="number"> for big integers, which a browser blanks.
HIDDEN_VERSION = {VersionField: {"widget": forms.HiddenInput}}


class ArticleAdmin(ConflictResolutionMixin, admin.ModelAdmin):
    fields = ["title", "body", "status", "version"]
    formfield_overrides = HIDDEN_VERSION


site.register(Article, ArticleAdmin)


class StockAdmin(ConflictResolutionMixin, admin.ModelAdmin):
    formfield_overrides = HIDDEN_VERSION


site.register(Stock, StockAdmin)


class ItemInline(admin.TabularInline):
    model = Item
    extra = 1


class CategoryAdmin(ConflictResolutionMixin, ConcurrentModelAdmin):
    """Inline rows with a version of their own (not an aggregate)."""

    inlines = [ItemInline]


site.register(Category, CategoryAdmin)

urlpatterns = [path("admin/", site.urls)]
