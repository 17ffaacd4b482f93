"""Test settings plus tests.proxyapp, on the test database of tests/interop/test_proxies.py."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.proxyapp"]
DATABASES = {"default": {**DATABASES["default"], "NAME": os.environ["CONCURRENCY_PROXY_DB"]}}
