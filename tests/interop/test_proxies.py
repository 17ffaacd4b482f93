"""apply_concurrency_check() in AppConfig.ready() versions the proxies declared before it (issue #11, item 5).

The proxies of ``auth.Group`` in tests/proxyapp exist before ``tests.demo``'s
``ready()`` adds the version field to ``Group``. A fresh Python process sets
Django up with them (tests/support/proxy_process.py) against this test run's database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def run_fresh_process(prefix: str) -> dict[str, Any]:
    env = {**os.environ, "CONCURRENCY_PROXY_DB": str(connection.settings_dict["NAME"])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.proxy_process", prefix],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_proxies_declared_before_ready_are_versioned_in_a_fresh_process() -> None:
    report = run_fresh_process("fresh")
    for name in ("TeamGroup", "Squad"):
        result = report[name]
        assert result["has_version_field"], name
        # Group's version is an IntegerVersionField (a time-based version).
        assert result["saved_version"] > result["created_version"] > 0, name
        assert result["stale_save"] == "refused", name
        assert result["stale_delete"] == "refused", name
        row = Group.objects.get(pk=result["pk"])
        assert (row.name, row.version) == (f"fresh-{name}-renamed", result["saved_version"])
    assert report["current_delete"] == 1
    assert not Group.objects.filter(name="fresh-current-delete").exists()
