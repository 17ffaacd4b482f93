"""System checks concurrency.A001/A002 of ConcurrentModelAdmin."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin

from concurrency.admin import ConcurrentModelAdmin
from tests.demo.models import Article, PlainCounter


def ids(admin_class: type[admin.ModelAdmin], model: Any = Article) -> list[str]:
    site = admin.AdminSite(name="checks")
    return [
        message.id for message in admin_class(model, site).check() if message.id.startswith("concurrency")
    ]


class Default(ConcurrentModelAdmin):
    pass


class FieldsWithout(ConcurrentModelAdmin):
    fields = ["title", "status"]


class FieldsNested(ConcurrentModelAdmin):
    fields = ["title", ("status", "version")]


class FieldsetsWithout(ConcurrentModelAdmin):
    fieldsets = [(None, {"fields": ["title"]}), ("More", {"fields": [("status", "body")]})]


class FieldsetsNested(ConcurrentModelAdmin):
    fieldsets = [(None, {"fields": ["title"]}), ("More", {"fields": [("status", "version")]})]


class Excluded(ConcurrentModelAdmin):
    exclude = ["version"]


class ReadOnly(ConcurrentModelAdmin):
    readonly_fields = ["version"]


class DynamicWithout(ConcurrentModelAdmin):
    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        return [(None, {"fields": ["title", "status"]})]


class DynamicWith(ConcurrentModelAdmin):
    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        return [(None, {"fields": ["title", ("status", "version")]})]


class DynamicFieldsWithout(ConcurrentModelAdmin):
    def get_fields(self, request: Any, obj: Any = None) -> Any:
        return ["title"]


class NeedsRealRequest(ConcurrentModelAdmin):
    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        return [(None, {"fields": ["title"] if request.user.is_superuser else ["title", "version"]})]


@pytest.mark.parametrize(
    ("admin_class", "expected"),
    [
        (Default, []),
        (FieldsWithout, ["concurrency.A001"]),
        (FieldsNested, []),
        (FieldsetsWithout, ["concurrency.A002"]),
        (FieldsetsNested, []),
        (Excluded, ["concurrency.A001"]),
        (ReadOnly, ["concurrency.A001"]),
        (DynamicWithout, ["concurrency.A002"]),
        (DynamicWith, []),
        (DynamicFieldsWithout, ["concurrency.A001"]),
        (NeedsRealRequest, []),
    ],
)
def test_version_field_checks(admin_class: type[admin.ModelAdmin], expected: list[str]) -> None:
    assert ids(admin_class) == expected


def test_check_message_is_complete() -> None:
    site = admin.AdminSite(name="checks")
    [error] = [m for m in FieldsetsWithout(Article, site).check() if m.id == "concurrency.A002"]
    assert error.obj is FieldsetsWithout
    assert "'version'" in error.msg and "fieldsets" in error.msg
    assert error.hint == "Add 'version' to 'fieldsets'."


def test_models_without_version_are_not_checked() -> None:
    class Plain(ConcurrentModelAdmin):
        fields = ["name"]

    assert ids(Plain, PlainCounter) == []


def test_demo_admins_pass_the_checks() -> None:
    for model_admin in admin.site._registry.values():
        assert [m for m in model_admin.check() if m.id.startswith("concurrency")] == []
