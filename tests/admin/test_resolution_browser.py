"""Resolving a conflict in the admin, in a real Chromium against a live server.

Uses Debian's Chromium through Playwright (no browser download); skipped only
when /usr/bin/chromium is missing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import override_settings

from tests.demo.models import Article, Order, OrderLine
from tests.support.browser import chromium, needs_chromium

PASSWORD = "resolution-browser-test"

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]


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
@override_settings(ROOT_URLCONF="tests.support.resolution_urls")
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

    @override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, "tests.support.csp.StrictCSPMiddleware"])
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
        # Nothing is preselected for the field both changed, nor highlighted.
        assert not alice.is_checked("input[name='_concurrency_choice-title'][value=mine]")
        assert not alice.is_checked("input[name='_concurrency_choice-title'][value=theirs]")
        assert (taken("mine"), taken("theirs")) == (False, False)
        # Save without a choice: the browser asks for one, nothing is posted.
        page_url = alice.url
        alice.click("input[name=_save]")
        missing = alice.eval_on_selector(
            "input[name='_concurrency_choice-title'][value=mine]", "radio => radio.validity.valueMissing"
        )
        assert missing is True
        assert alice.url == page_url
        alice.check("input[name='_concurrency_choice-title'][value=theirs]")
        assert (taken("mine"), taken("theirs")) == (False, True)
        alice.check("input[name='_concurrency_choice-title'][value=mine]")
        assert (taken("mine"), taken("theirs")) == (True, False)
        alice.click("label:has-text('Take theirs')")
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


def _columns(page: Any, table: str = "table.concurrency-merge") -> list[float]:
    """Return the widths of the comparison table's column headers."""
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"{table} thead th", "cells => cells.map(cell => cell.getBoundingClientRect().width)"
    )


def _fits(page: Any, width: int) -> dict[str, Any]:
    """Return how the page fits a viewport ``width`` wide: scroll width and the cells that stick out."""
    return page.evaluate(  # type: ignore[no-any-return]
        """width => ({
            scroll: document.documentElement.scrollWidth,
            outside: Array.from(document.querySelectorAll(
                ".concurrency-merge td, .concurrency-merge th, .submit-row input, .concurrency-choice label"
            )).filter(el => el.getClientRects().length && el.getBoundingClientRect().right > width + 0.5)
              .map(el => el.outerHTML.slice(0, 80)),
        })""",
        width,
    )


@override_settings(ROOT_URLCONF="tests.urls")
class InlineResolutionBrowserTests(StaticLiveServerTestCase):
    """The demo's Orders: lines inline, one aggregate (issue #20 item 1, issue #22 item 5)."""

    def setUp(self) -> None:
        for username in ("alice", "bob"):
            get_user_model().objects.create_superuser(username, f"{username}@example.com", PASSWORD)
        order = Order.objects.create(customer="ACME")
        for product in ("Bolts", "Nuts", "Washers"):
            OrderLine.objects.create(order=order, product=product, quantity=10)
        self.order = order
        self.url = f"/admin/demo/order/{order.pk}/change/"

    def _lines(self) -> dict[str, int]:
        return dict(OrderLine.objects.filter(order=self.order).values_list("product", "quantity"))

    def test_a_line_each_side_changed_is_merged(self) -> None:
        with chromium() as browser:
            self._merge(browser)
        assert self._lines() == {"Bolts": 20, "Nuts": 5, "Washers": 10}
        assert Order.objects.get().version > 2

    def _merge(self, browser: Any) -> None:
        alice = _login(browser, self.live_server_url, "alice")
        bob = _login(browser, self.live_server_url, "bob")
        alice.goto(self.url)
        bob.goto(self.url)
        alice.fill("#id_lines-0-quantity", "20")
        _save(alice)
        bob.fill("#id_lines-1-quantity", "5")
        _save(bob)
        bob.wait_for_selector("table.concurrency-inline")
        heads = bob.locator("table.concurrency-inline tr.concurrency-row-head th").all_inner_texts()
        assert heads == ["“Bolts”: changed by someone else", "“Nuts”: changed by you"]
        cells = bob.locator("table.concurrency-inline tbody tr:not(.concurrency-row-head)")
        assert [row[:3] for row in (cells.nth(i).locator("td").all_inner_texts() for i in range(2))] == [
            ["10", "10", "20"],
            ["10", "5", "10"],
        ]
        _save(bob)
        assert bob.url.endswith("/admin/demo/order/")

    def test_the_page_fits_a_phone_and_columns_keep_their_width(self) -> None:
        with chromium() as browser:
            self._phone(browser)
        assert self._lines() == {"Bolts": 30, "Nuts": 5, "Washers": 10}
        assert Order.objects.get().customer == "ACME Ltd"

    def _phone(self, browser: Any) -> None:
        alice = _login(browser, self.live_server_url, "alice")
        bob = _login(browser, self.live_server_url, "bob")
        alice.goto(self.url)
        bob.goto(self.url)
        alice.fill("#id_customer", "ACME Ltd")
        alice.fill("#id_lines-0-quantity", "20")
        _save(alice)
        bob.fill("#id_customer", "ACME Inc.")
        bob.fill("#id_lines-0-quantity", "30")
        bob.fill("#id_lines-1-quantity", "5")
        _save(bob)
        bob.wait_for_selector("table.concurrency-inline")
        customer = "input[name='_concurrency_choice-customer']"
        bolts = "table.concurrency-inline tr.concurrency-conflict input[type=radio]"
        # On a wide screen, choosing a side (which makes the value bold) moves no column.
        bob.set_viewport_size({"width": 1280, "height": 800})
        widths = _columns(bob), _columns(bob, "table.concurrency-inline")
        for selector in (customer, bolts):
            for side in ("mine", "theirs", "mine"):
                bob.check(f"{selector}[value={side}]")
                assert (_columns(bob), _columns(bob, "table.concurrency-inline")) == widths
        # On a phone 390 px wide: no sideways scroll, nothing cut off, each value labelled.
        bob.set_viewport_size({"width": 390, "height": 844})
        fits = _fits(bob, 390)
        assert fits == {"scroll": 390, "outside": []}
        label = bob.eval_on_selector(
            "table.concurrency-merge tr[data-field=customer] td.concurrency-mine",
            "cell => getComputedStyle(cell, '::before').content",
        )
        assert label == '"You entered"'
        for side in ("theirs", "mine"):
            bob.check(f"{customer}[value={side}]")
            assert _fits(bob, 390) == fits
        bob.check(f"{customer}[value=theirs]")
        bob.check(f"{bolts}[value=mine]")
        box = bob.locator("input[name=_save]").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        _save(bob)
        assert bob.url.endswith("/admin/demo/order/")
