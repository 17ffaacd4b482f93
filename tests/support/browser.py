"""Chromium through Playwright for the browser tests (Debian's /usr/bin/chromium, no browser download).

``.ci/run`` installs it; the tests are skipped only when it is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "browser-test-password"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


@contextmanager
def chromium() -> Iterator[Any]:
    """Yield a headless Chromium. Make no ORM calls inside: Playwright's event
    loop would give them a connection of their own that nobody closes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls
    # the test makes meanwhile are still plain synchronous calls.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Person:
    """One logged-in admin user in a browser context of their own."""

    def __init__(self, browser: Any, base_url: str, username: str) -> None:
        get_user_model().objects.create_superuser(username, f"{username}@example.com", PASSWORD)
        self.context = browser.new_context(base_url=base_url)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.page.goto("/admin/login/?next=/admin/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.submit("input[type=submit]")
        self.page.wait_for_selector("#site-name")

    def submit(self, selector: str) -> None:
        """Click a submit button and wait for the next page."""
        with self.page.expect_navigation():
            self.page.click(selector)

    def messages(self) -> list[str]:
        return [text.strip() for text in self.page.locator("ul.messagelist li").all_inner_texts()]

    def close(self) -> None:
        self.context.close()
