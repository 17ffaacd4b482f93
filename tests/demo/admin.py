"""The demo site's admin: every feature of concurrency.admin on display."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from concurrency.admin import ConcurrentModelAdmin
from concurrency.resolution import ConflictResolutionMixin

from .models import Article, Category, Item, Order, OrderLine


@admin.action(description="Mark selected articles as published")
def publish(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    """Save each row, so every write is itself version-checked."""
    count = 0
    for article in queryset:
        article.status = "published"
        article.save()
        count += 1
    modeladmin.message_user(request, f"{count} article(s) published.", messages.SUCCESS)


@admin.register(Article)
class ArticleAdmin(ConflictResolutionMixin, ConcurrentModelAdmin):
    """A stale change form shows the field-by-field resolution page."""

    # The title is editable in the list, so the first column links to the change form.
    list_display = ["__str__", "title", "status", "version"]
    list_display_links = ["__str__"]
    list_editable = ["title", "status"]
    list_filter = ["status"]
    search_fields = ["title"]
    actions = [publish]
    fieldsets = [
        (None, {"fields": ["title", "status", "body"]}),
        ("Concurrency", {"fields": ["version"], "description": "The revision you are editing."}),
    ]


class ItemInline(admin.TabularInline):
    model = Item
    extra = 1


@admin.register(Category)
class CategoryAdmin(ConcurrentModelAdmin):
    list_display = ["name", "version"]
    inlines = [ItemInline]


@admin.register(Item)
class ItemAdmin(ConcurrentModelAdmin):
    list_display = ["__str__", "name", "category", "version"]
    list_display_links = ["__str__"]
    list_editable = ["name", "category"]
    list_filter = ["category"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 1


@admin.register(Order)
class OrderAdmin(ConflictResolutionMixin, ConcurrentModelAdmin):
    """An aggregate: a line added, changed or deleted by someone else is a conflict for the order."""

    list_display = ["customer", "version"]
    inlines = [OrderLineInline]
