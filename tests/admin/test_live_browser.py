"""The "changed since you opened it" notice in a real Chromium: two people, two browser contexts.

Uses Debian's Chromium through Playwright (no browser download); skipped only
when /usr/bin/chromium is missing. The pages are served with a strict
Content-Security-Policy (``script-src 'self'``, added to each page as the
browser receives it), so an inline script would not run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.demo.models import Article
from tests.support.browser import Person, browser, needs_chromium  # noqa: F401 - the module's fixture

INTERVAL = 2  # seconds between checks in these tests
SLACK = 3.0  # seconds allowed on top of one interval, for a loaded machine

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]

# Headless Chromium reports every page as visible, whatever is in front. The
# test drives the Page Visibility API the way a browser would: it changes
# document.visibilityState and fires "visibilitychange".
VISIBILITY = """
(() => {
  let state = "visible";
  const define = (name, get) => Object.defineProperty(Document.prototype, name, {get, configurable: true});
  define("visibilityState", () => state);
  define("hidden", () => state !== "visible");
  window.__setVisibility = (value) => {
    state = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""


CSP = "default-src 'self'; script-src 'self'; object-src 'none'"


class Watcher(Person):
    """A logged-in admin user whose page's version checks are recorded."""

    def __init__(self, chromium: Any, base_url: str, username: str) -> None:
        super().__init__(chromium, base_url, username)
        self.checks: list[tuple[float, int]] = []
        self.csp_errors: list[str] = []
        self.page.add_init_script(VISIBILITY)
        self.page.on("response", self._record)
        self.page.on("console", self._console)
        # Every page this person opens from now on comes with a strict policy.
        self.context.route("**/*", self._with_csp)

    @staticmethod
    def _with_csp(route: Any) -> None:
        if route.request.resource_type != "document":
            route.continue_()
            return
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": CSP})

    def _console(self, message: Any) -> None:
        # Scripts only: the policy's subject here (admin pages carry inline styles).
        if "Content Security Policy" in message.text and "script" in message.text:
            self.csp_errors.append(message.text)

    def _record(self, response: Any) -> None:
        if re.search(r"/version/(\?|$)", response.url):
            self.checks.append((time.monotonic(), response.status))

    def inline_script_runs(self) -> bool:
        return bool(
            self.page.evaluate(
                """() => {
                  const probe = document.createElement("script");
                  probe.textContent = "window.__inline = true";
                  document.head.appendChild(probe);
                  return window.__inline === true;
                }"""
            )
        )

    def notices(self) -> list[str]:
        return [t.strip() for t in self.page.locator("ul.concurrency-live-notice li").all_inner_texts()]

    def set_visibility(self, state: str) -> None:
        self.page.evaluate("state => window.__setVisibility(state)", state)


@pytest.fixture
def people(browser: Any, live_server: Any, settings: Any) -> Iterator[tuple[Watcher, Watcher]]:  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CONCURRENCY_LIVE_INTERVAL = INTERVAL
    alice = Watcher(browser, live_server.url, "alice")
    bob = Watcher(browser, live_server.url, "bob")
    yield alice, bob
    alice.close()
    bob.close()


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="Roadmap", body="text", status="draft")


def test_notice_appears_within_one_interval_of_the_other_save_and_not_before(
    people: tuple[Watcher, Watcher], article: Article
) -> None:
    alice, bob = people
    url = f"/admin/demo/article/{article.pk}/change/"
    alice.page.goto(url)
    bob.page.goto(url)
    assert bob.inline_script_runs() is False  # the policy is in force
    bob.csp_errors.clear()
    bob.page.fill("#id_body", "Bob is typing a long paragraph.")

    # Nothing changed: the checks run, are answered 304, and nothing is shown.
    bob.page.wait_for_timeout(INTERVAL * 2500)
    assert len(bob.checks) >= 2
    assert {status for _, status in bob.checks} == {304}
    assert bob.notices() == []

    alice.page.fill("#id_title", "Roadmap 2027")
    alice.submit("input[name=_save]")
    saved = time.monotonic()
    assert any("was changed successfully" in m for m in alice.messages())

    bob.page.wait_for_selector("ul.concurrency-live-notice li", timeout=(INTERVAL + SLACK) * 1000)
    shown = time.monotonic()
    assert shown - saved <= INTERVAL + SLACK
    [notice] = bob.notices()
    assert re.match(r"Changed by alice at .+ since you opened this page\. ", notice)
    assert bob.page.locator("ul.concurrency-live-notice li.warning").count() == 1
    link = bob.page.locator("a.concurrency-live-open")
    assert link.inner_text() == "Open the current version in a new tab"
    assert link.get_attribute("href") == url
    assert link.get_attribute("target") == "_blank"
    # Checking stops once the notice is shown; bob's typing is untouched.
    count = len(bob.checks)
    bob.page.wait_for_timeout(INTERVAL * 1500)
    assert len(bob.checks) == count
    assert bob.page.input_value("#id_body") == "Bob is typing a long paragraph."
    assert alice.notices() == []  # alice's page holds the version she saved

    # "Compare with your changes" submits bob's form: the resolution page, nothing saved.
    with bob.page.expect_navigation():
        bob.page.click("button.concurrency-live-resolve")
    bob.page.wait_for_selector("table.concurrency-merge")
    assert Article.objects.get(pk=article.pk).body == "text"
    assert bob.csp_errors == [] and alice.csp_errors == []


def test_nothing_appears_when_nothing_changed(people: tuple[Watcher, Watcher], article: Article) -> None:
    alice, bob = people
    url = f"/admin/demo/article/{article.pk}/change/"
    alice.page.goto(url)
    bob.page.goto(url)
    alice.page.goto(f"/admin/demo/article/{article.pk}/history/")  # alice looks, saves nothing
    bob.page.wait_for_timeout(INTERVAL * 3500)
    assert len(bob.checks) >= 3
    assert {status for _, status in bob.checks} == {304}
    assert bob.notices() == []
    assert bob.csp_errors == []


def test_checks_stop_while_the_page_is_hidden_and_resume_when_it_shows(
    people: tuple[Watcher, Watcher], article: Article
) -> None:
    _alice, bob = people
    url = f"/admin/demo/article/{article.pk}/change/"
    bob.page.goto(url)
    bob.page.wait_for_timeout(INTERVAL * 1500)
    assert len(bob.checks) >= 1
    bob.set_visibility("hidden")
    hidden_at = time.monotonic()
    Article.objects.filter(pk=article.pk).update(title="changed while hidden")
    Article.objects.filter(pk=article.pk).update(version=article.version + 1)
    bob.page.wait_for_timeout(INTERVAL * 2500)
    assert [t for t, _ in bob.checks if t > hidden_at + 0.5] == []
    assert bob.notices() == []
    shown_at = time.monotonic()
    bob.set_visibility("visible")
    # Coming back is checked at once, not an interval later.
    bob.page.wait_for_selector("ul.concurrency-live-notice li", timeout=SLACK * 1000)
    assert time.monotonic() - shown_at < SLACK
    assert bob.notices() == [
        "Someone else changed this record since you opened this page. Open the current version in a new tab "
        "Compare with your changes"
    ]


def test_a_deleted_record_is_announced_without_links(
    people: tuple[Watcher, Watcher], article: Article
) -> None:
    alice, bob = people
    url = f"/admin/demo/article/{article.pk}/change/"
    bob.page.goto(url)
    alice.page.goto(f"/admin/demo/article/{article.pk}/delete/")
    alice.submit("input[type=submit]")
    bob.page.wait_for_selector("ul.concurrency-live-notice li.error", timeout=(INTERVAL + SLACK) * 1000)
    [notice] = bob.notices()
    assert re.fullmatch(r"Deleted by alice at .+ since you opened this page\.", notice)
    assert bob.page.locator("a.concurrency-live-open").count() == 0


def test_a_concurrent_form_page_with_the_template_tag(
    people: tuple[Watcher, Watcher], article: Article, settings: Any
) -> None:
    settings.ROOT_URLCONF = "tests.support.urls_live"
    alice, bob = people
    bob.page.goto(f"/articles/{article.pk}/")
    bob.page.wait_for_timeout(INTERVAL * 1500)
    assert bob.notices() == []
    alice.page.goto(f"/admin/demo/article/{article.pk}/change/")
    alice.page.fill("#id_title", "Changed by Alice")
    alice.submit("input[name=_save]")
    bob.page.wait_for_selector("ul.concurrency-live-notice li", timeout=(INTERVAL + SLACK) * 1000)
    [notice] = bob.notices()
    assert re.match(r"Changed by alice at .+ since you opened this page\. Open the current version", notice)
    # The notice is where the tag is: right before the form.
    assert (
        bob.page.evaluate(
            "document.querySelector('ul.concurrency-live-notice').nextElementSibling.nextElementSibling.id"
        )
        == "article-form"
    )
    assert bob.csp_errors == []
