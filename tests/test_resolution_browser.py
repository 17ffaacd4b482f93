"""Resolving a conflict in the admin, in a real Chromium against a live server.

Uses Debian's Chromium through Playwright (no browser download); skipped only
when /usr/bin/chromium is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import override_settings

from tests.demo.models import Article

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
PASSWORD = "resolution-browser-test"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


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


def _login(browser: Any, base_url: str, username: str) -> Any:
    page = browser.new_context(base_url=base_url).new_page()
    page.set_default_timeout(15_000)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    return page


def _save(page: Any) -> None:
    with page.expect_navigation():
        page.click("input[name=_save]")


# A server per class (not pytest-django's session-wide one), so that its
# connections are closed before the test database is dropped.
@override_settings(ROOT_URLCONF="tests.resolution_urls")
class ResolutionBrowserTests(StaticLiveServerTestCase):
    def test_resolve_a_conflict_field_by_field(self) -> None:
        for username in ("alice", "bob"):
            get_user_model().objects.create_superuser(username, f"{username}@example.com", PASSWORD)
        article = Article.objects.create(title="Title", body="Body", status="draft")
        with chromium() as browser:
            self._resolve(browser, f"/admin/demo/article/{article.pk}/change/")
        row = Article.objects.get()
        assert (row.title, row.body, row.status, row.version) == ("Alice's title", "Bob's body", "review", 3)

    def _resolve(self, browser: Any, url: str) -> None:
        alice = _login(browser, self.live_server_url, "alice")
        bob = _login(browser, self.live_server_url, "bob")
        alice.goto(url)
        bob.goto(url)

        bob.fill("#id_body", "Bob's body")
        bob.select_option("#id_status", "review")
        _save(bob)

        alice.fill("#id_title", "Alice's title")
        alice.select_option("#id_status", "published")
        _save(alice)

        assert alice.locator("table.concurrency-merge").is_visible()
        cells = {
            name: alice.locator(f"tr[data-field={name}] td").all_inner_texts()[:3]
            for name in ("title", "body", "status")
        }
        assert cells == {
            "title": ["Title", "Alice's title", "Title"],
            "body": ["Body", "Body", "Bob's body"],
            "status": ["Draft", "Published", "In review"],
        }
        assert "Changed by bob at" in alice.locator(".concurrency-who").inner_text()
        assert alice.locator("tr.concurrency-conflict").count() == 1
        taken = alice.locator("tr[data-field=body] td.concurrency-theirs").get_attribute("class") or ""
        assert "concurrency-taken" in taken

        alice.check("input[name='_concurrency_choice-status'][value=theirs]")
        _save(alice)
        assert alice.url.endswith("/admin/demo/article/")

    @override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, "tests.csp.StrictCSPMiddleware"])
    def test_choosing_a_side_moves_the_highlight_under_a_strict_csp(self) -> None:
        for username in ("alice", "bob"):
            get_user_model().objects.create_superuser(username, f"{username}@example.com", PASSWORD)
        article = Article.objects.create(title="Title", body="Body", status="draft")
        url = f"/admin/demo/article/{article.pk}/change/"
        with chromium() as browser:
            self._choose(browser, url)
        row = Article.objects.get()
        assert (row.title, row.status, row.version) == ("Bob's title", "published", 3)

    def _choose(self, browser: Any, url: str) -> None:
        alice = _login(browser, self.live_server_url, "alice")
        bob = _login(browser, self.live_server_url, "bob")
        violations: list[str] = []

        def report(message: Any) -> None:
            if "Content Security Policy" in message.text:
                violations.append(message.text)

        alice.on("console", report)
        alice.goto(url)
        bob.goto(url)
        bob.fill("#id_title", "Bob's title")
        _save(bob)
        alice.fill("#id_title", "Alice's title")
        alice.select_option("#id_status", "published")
        _save(alice)

        def taken(side: str) -> bool:
            cell = alice.locator(f"tr[data-field=title] td.concurrency-{side}")
            return "concurrency-taken" in (cell.get_attribute("class") or "")

        alice.wait_for_selector("table.concurrency-merge")
        # "Keep mine" is preselected, and highlighted.
        assert alice.is_checked("input[name='_concurrency_choice-title'][value=mine]")
        assert (taken("mine"), taken("theirs")) == (True, False)
        alice.check("input[name='_concurrency_choice-title'][value=theirs]")
        assert (taken("mine"), taken("theirs")) == (False, True)
        alice.check("input[name='_concurrency_choice-title'][value=mine]")
        assert (taken("mine"), taken("theirs")) == (True, False)
        alice.click("text=Take theirs")
        assert (taken("mine"), taken("theirs")) == (False, True)
        # The page's style sheet applies (served as a file, not inline).
        weight = alice.eval_on_selector(
            "tr[data-field=title] td.concurrency-theirs", "cell => getComputedStyle(cell).fontWeight"
        )
        assert weight == "700"
        # The buttons are in the admin's submit row, styled by the admin.
        row = alice.locator("#concurrency-resolve-form div.submit-row")
        assert row.locator("input[name=_save].default").is_visible()
        assert row.locator("input[name=_continue]").is_visible()
        assert row.locator("a.closelink").inner_text() == "Discard my changes"
        # Styled by the admin's forms.css, as on the change form.
        assert row.evaluate("element => getComputedStyle(element).display") == "flex"
        assert violations == []
        _save(alice)
        assert alice.url.endswith("/admin/demo/article/")
