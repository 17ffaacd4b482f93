"""Run in a new process by tests/interop/test_proxies.py: use proxies of auth.Group, report as JSON.

``tests.demo``'s ``AppConfig.ready()`` calls ``apply_concurrency_check(Group, ...)``
after ``tests.proxyapp.models`` has declared proxies of ``Group``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.settings_proxies"
    import django

    django.setup()
    from concurrency.exceptions import RecordModifiedError
    from tests.proxyapp.models import Squad, TeamGroup

    prefix = sys.argv[1]
    report: dict[str, Any] = {}
    for model in (TeamGroup, Squad):
        name = model.__name__
        result: dict[str, Any] = {
            "has_version_field": "version" in [f.name for f in model._meta.concrete_fields],
        }
        created = model.objects.create(name=f"{prefix}-{name}")
        result["created_version"] = created.version
        stale = model.objects.get(pk=created.pk)
        fresh = model.objects.get(pk=created.pk)
        fresh.name = f"{prefix}-{name}-renamed"
        fresh.save()
        result["saved_version"] = fresh.version
        stale.name = f"{prefix}-{name}-stale"
        try:
            stale.save()
            result["stale_save"] = "saved"
        except RecordModifiedError:
            result["stale_save"] = "refused"
        try:
            stale.delete()
            result["stale_delete"] = "deleted"
        except RecordModifiedError:
            result["stale_delete"] = "refused"
        result["pk"] = created.pk
        report[name] = result
    gone = TeamGroup.objects.create(name=f"{prefix}-current-delete")
    report["current_delete"] = TeamGroup.objects.get(pk=gone.pk).delete()[0]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
