#!/usr/bin/env python3
"""Retake the screenshots of the documentation from the demo site, in Chromium.

    python3 dev.py screenshots [--output DIR] [--only NAME ...]

Runs the demo (``manage.py runserver`` with CONCURRENCY_DEMO=1) on a fresh
SQLite file and a free port, plays two people editing the same records in two
browser contexts of Debian's /usr/bin/chromium (through Playwright, nothing
downloaded), and saves one PNG per situation the docs show.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "_static" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "screenshots-only"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 760}

#: The files written, in the order they are taken.
FILES = [
    "change-form-refused.png",
    "resolution-light.png",
    "resolution-dark.png",
    "list-editable-warning.png",
    "conflict-409.png",
    "inline-refusal.png",
    "resolution-inline.png",
    "resolution-phone.png",
]
PHONE = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, server: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the demo server exited with status {server.returncode}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the demo server did not answer {url} within {seconds:.0f} s")


class Person:
    """One logged-in admin in a browser context of their own."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context(base_url=base_url, viewport=VIEWPORT, color_scheme="light")
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.page.goto("/admin/login/?next=/admin/")
        self.page.fill("#id_username", "admin")
        self.page.fill("#id_password", PASSWORD)
        self.submit("input[type=submit]")

    def submit(self, selector: str) -> None:
        with self.page.expect_navigation():
            self.page.click(selector)

    def open(self, changelist: str, name: str) -> str:
        """Open the change form of the row called ``name``; return its URL."""
        self.page.goto(f"{changelist}?q={name}")
        with self.page.expect_navigation():
            self.page.locator("#result_list tbody th a", has_text=name).first.click()
        self.page.wait_for_selector("div.submit-row")
        return str(self.page.url)


def shoot(browser: Any, base_url: str, output: Path, only: set[str] | None = None) -> list[Path]:
    alice, bob = Person(browser, base_url), Person(browser, base_url)
    written: list[Path] = []

    def save(person: Person, name: str, full_page: bool = True) -> None:
        if only is not None and name not in only:
            return
        path = output / name
        person.page.screenshot(path=str(path), full_page=full_page)
        written.append(path)

    # 1. A plain ConcurrentModelAdmin refuses the stale change form and keeps the input.
    url = alice.open("/admin/demo/category/", "Hardware")
    bob.page.goto(url)
    alice.page.fill("#id_name", "Hardware and tools")
    alice.submit("input[name=_save]")
    bob.page.fill("#id_name", "Computer hardware")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector(".errornote")
    save(bob, FILES[0])

    # 2. ConflictResolutionMixin: the field-by-field page, light and dark.
    url = alice.open("/admin/demo/article/", "Roadmap")
    bob.page.goto(url)
    alice.page.fill("#id_title", "Roadmap 2027")
    alice.page.select_option("#id_status", "published")
    alice.submit("input[name=_save]")
    bob.page.select_option("#id_status", "draft")
    bob.page.fill("#id_body", "Where we are going next, and when.")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector("table.concurrency-merge")
    save(bob, FILES[1])
    bob.page.emulate_media(color_scheme="dark")
    save(bob, FILES[2])
    bob.page.emulate_media(color_scheme="light")

    # 3. list_editable: a row changed by someone else is set aside, with a warning.
    alice.page.goto("/admin/demo/article/")
    bob.page.goto("/admin/demo/article/")

    def row(person: Person, name: str) -> Any:
        return person.page.locator(
            "#result_list tbody tr", has=person.page.get_by_role("link", name=name, exact=True)
        )

    row(alice, "Style guide").locator("select[name$='-status']").select_option("published")
    alice.submit("input[name=_save]")
    row(bob, "Style guide").locator("input[name$='-title']").fill("Style guide (2nd edition)")
    row(bob, "Onboarding").locator("input[name$='-title']").fill("Onboarding for new editors")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector("ul.messagelist li.warning")
    save(bob, FILES[3], full_page=False)

    # 4. A plain Django form view and ConcurrencyMiddleware: the 409 page.
    alice.open("/admin/demo/article/", "Incident report")
    pk = str(alice.page.url).split("?")[0].rstrip("/").split("/")[-2]
    edit = f"/plain/articles/{pk}/edit/"
    alice.page.goto(edit)
    bob.page.goto(edit)
    alice.page.fill("#id_title", "Incident report: Tuesday outage")
    alice.submit("button[type=submit]")
    bob.page.fill("#id_body", "The database was down for ten minutes.")
    bob.submit("button[type=submit]")
    bob.page.wait_for_selector(".concurrency-message")
    save(bob, FILES[4])

    # 5. An inline refusal: Alice changed item 3, Bob item 2; Bob's form marks item 3, as Alice saved it.
    url = alice.open("/admin/demo/category/", "Software")
    bob.page.goto(url)
    bob.page.fill("#id_items-1-name", "Software item 2 (renewed)")
    alice.page.fill("#id_items-2-name", "Software item 3 (retired)")
    alice.submit("input[name=_save]")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector("tr.row-form-errors")
    save(bob, FILES[5])
    # 6. An order and its lines inline (one aggregate): the rows that differ, on a desk and on a phone.
    url = alice.open("/admin/demo/order/", "ACME")
    bob.page.goto(url)
    alice.page.fill("#id_lines-0-quantity", "20")
    alice.page.fill("#id_lines-3-product", "Screws")
    alice.page.fill("#id_lines-3-quantity", "4")
    alice.submit("input[name=_save]")
    bob.page.fill("#id_lines-0-quantity", "30")
    bob.page.fill("#id_lines-1-quantity", "5")
    bob.page.check("#id_lines-2-DELETE")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector("table.concurrency-inline")
    save(bob, FILES[6])
    bob.page.set_viewport_size(PHONE)
    bob.page.check("table.concurrency-inline tr.concurrency-conflict input[value=theirs]")
    save(bob, FILES[7])
    bob.page.set_viewport_size(VIEWPORT)

    alice.context.close()
    bob.context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help=f"folder for the PNG files (default: {OUTPUT})"
    )
    parser.add_argument(
        "--only", nargs="+", choices=FILES, help="retake only these files (the others are left as they are)"
    )
    options = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    options.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "CONCURRENCY_DB": "sqlite",
            "CONCURRENCY_DEMO": "1",
            "CONCURRENCY_DEMO_DB": str(Path(tmp) / "demo.sqlite3"),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        }
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        subprocess.run([*manage, "demo_setup", "--password", PASSWORD], cwd=ROOT, env=env, check=True)
        address = f"127.0.0.1:{_free_port()}"
        server = subprocess.Popen(
            [*manage, "runserver", "--noreload", address],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(f"http://{address}/admin/login/", server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    written = shoot(
                        browser,
                        f"http://{address}",
                        options.output,
                        set(options.only) if options.only else None,
                    )
                finally:
                    browser.close()
        finally:
            server.terminate()
            server.wait(30)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
