from __future__ import annotations

import pytest
from django.conf import settings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip vendor-only tests on the other databases, saying why."""
    vendor = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mysql", "mysql": "mysql"}[
        settings.DB
    ]
    for item in items:
        for name in ("postgresql", "mysql"):
            if item.get_closest_marker(name) and vendor != name:
                item.add_marker(pytest.mark.skip(reason=f"needs {name}; CONCURRENCY_DB={settings.DB}"))
