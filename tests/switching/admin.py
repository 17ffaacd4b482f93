"""The project's admin: it names things with concurrency.utils at import time."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin

from concurrency.admin import ConcurrentModelAdmin
from concurrency.utils import flatten, fqn, get_classname

from .models import Job, Label, Report

logger = logging.getLogger(fqn(Job))

site = admin.AdminSite(name="switching")


@admin.register(Job, site=site)
class JobAdmin(ConcurrentModelAdmin):
    fields = ["name", "status", "version"]
    list_display = ["name", "status", "task_name"]
    search_fields = flatten([["name"], ("task_id", "task_name")])

    def log_change(self, request: Any, obj: Any, message: Any) -> Any:
        logger.info("%s %s changed", get_classname(obj), obj.pk)
        return super().log_change(request, obj, message)


@admin.register(Report, Label, site=site)
class PlainAdmin(ConcurrentModelAdmin):
    pass
