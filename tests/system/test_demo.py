"""The demo site, ``dev.py`` and the screenshots of the docs, as a new user meets them."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from tests.demo.models import Article, Category, Item
from tests.support.form_reader import form_data

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "_static" / "screenshots"
PICTURES = [
    "change-form-refused.png",
    "resolution-light.png",
    "resolution-dark.png",
    "list-editable-warning.png",
    "conflict-409.png",
    "inline-refusal.png",
    "resolution-inline.png",
    "resolution-phone.png",
]
#: Pictures taken at a phone's width rather than the desktop's 1280 px.
WIDTHS = {"resolution-phone.png": 390}


# -- the demo's admin ------------------------------------------------------------


@pytest.mark.django_db
def test_demo_admin_names_objects_and_links_them(admin_client: Any) -> None:
    category = Category.objects.create(name="Hardware")
    item = Item.objects.create(category=category, name="Screwdriver")
    article = Article.objects.create(title="Roadmap", status="draft")

    index = admin_client.get(reverse("admin:index")).content.decode()
    assert ">Categories<" in index and "Categorys" not in index
    # The demo admin shows what the README walks through; bench/aggregates.py's PlainOrder is not there.
    demo_models = re.findall(r'<th scope="row"[^>]*>\s*<a href="/admin/demo/[^"]*"[^>]*>([^<]+)</a>', index)
    assert demo_models == ["Articles", "Categories", "Items", "Orders"]
    page = admin_client.get(reverse("admin:demo_category_change", args=[category.pk])).content.decode()
    assert "<h2>Hardware</h2>" in page and "object (" not in page
    assert 'value="Screwdriver"' in page

    for obj, name in ((article, "Roadmap"), (item, "Screwdriver")):
        changelist = admin_client.get(
            reverse(f"admin:demo_{obj._meta.model_name}_changelist")
        ).content.decode()
        link = reverse(f"admin:demo_{obj._meta.model_name}_change", args=[obj.pk])
        assert re.search(
            rf'<th class="field-__str__"><a href="{re.escape(link)}[^"]*">{name}</a></th>', changelist
        )


# Outside a test transaction, as in production: the refused save breaks the request's transaction.
@pytest.mark.django_db(transaction=True)
@override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, "concurrency.middleware.ConcurrencyMiddleware"])
def test_demo_edit_page_answers_a_stale_save_with_the_409_page(client: Any) -> None:
    article = Article.objects.create(title="Incident report", body="Tuesday", status="review")
    url = reverse("plain-article-edit", args=[article.pk])
    data = form_data(client.get(url).content, None, body="Mine")
    assert client.post(url, form_data(client.get(url).content, None, title="Theirs")).status_code == 302
    response = client.post(url, data)
    assert response.status_code == 409
    # Named as stored now (Alice's title), never by what this user sent.
    assert "Someone else changed “Theirs” while you were editing it" in response.content.decode()
    article.refresh_from_db()
    assert (article.title, article.body, article.version) == ("Theirs", "Tuesday", 2)


def test_demo_settings_install_the_middleware() -> None:
    env = {**os.environ, "CONCURRENCY_DEMO": "1"}
    code = "from tests import settings; print(settings.MIDDLEWARE[-1])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "concurrency.middleware.ConcurrencyMiddleware"


# Importing any installed library outside these distributions fails, as if it were missing.
_ONLY = """
import importlib.metadata as md, re, sys

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def requirement_names(dist):
    requires = [r for r in md.requires(dist) or [] if "extra ==" not in r]
    return {norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requires}

allowed, todo = set(), list(sys.argv[1:])
while todo:
    name = norm(todo.pop())
    if name not in allowed:
        allowed.add(name)
        todo += requirement_names(name)
distributions = md.packages_distributions()
blocked = {top for top, dists in distributions.items() if not {norm(d) for d in dists} & allowed}
blocked -= {"tests", "concurrency"}

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the demo group)")

sys.meta_path.insert(0, Missing())
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "check", "--database", "default", "--fail-level", "WARNING"])
"""


def test_demo_runs_with_the_demo_group_alone_and_checks_clean(tmp_path: Path) -> None:
    import tomllib

    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    demo_group = [re.match(r"[\w.-]+", requirement).group() for requirement in groups["demo"]]
    env = {
        **os.environ,
        "CONCURRENCY_DB": "sqlite",
        "CONCURRENCY_DEMO": "1",
        "CONCURRENCY_DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", _ONLY, "django-optimistic-concurrency", *demo_group],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    # The system checks import the URLconf (DRF's API, the plain views) and every admin.
    assert out.returncode == 0, out.stderr[-3000:]
    assert "System check identified no issues" in out.stdout
    assert "W163" not in out.stdout + out.stderr


# -- dev.py --------------------------------------------------------------------


def test_dev_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "dev.py", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for command in ("demo", "test", "bench", "manage", "setup [GROUPS]", "screenshots"):
        assert f"python3 dev.py {command}" in out.stdout
    assert "setup test docs" in out.stdout
    assert "python3 dev.py demo [--fresh] [ADDR]" in out.stdout and "DEMO_PASSWORD" in out.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _start_demo(port: int, database: Path, *flags: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `dev.py demo`, wait until it answers; return it and what it printed until then."""
    env = {**os.environ, "CONCURRENCY_DEMO_DB": str(database), "PYTHONUNBUFFERED": "1"}
    env["DEMO_PASSWORD"] = "demo-test"
    demo = subprocess.Popen(
        [sys.executable, "dev.py", "demo", *flags, f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert demo.stdout is not None
    for line in demo.stdout:  # runserver prints this once it listens
        lines.append(line)
        if line.startswith("Quit the server with"):
            break
    assert _answers(port), "".join(lines)
    return demo, lines


def _stop(demo: subprocess.Popen[str]) -> None:
    demo.terminate()
    demo.communicate(timeout=60)


def _readme_etag() -> str:
    match = re.search(r'ETag: ("1-[^"]+")', (ROOT / "README.md").read_text())
    assert match
    return match.group(1)


def test_demo_keeps_its_data_and_fresh_starts_over(tmp_path: Path) -> None:
    import json
    import urllib.request

    port, database = _free_port(), tmp_path / "demo.sqlite3"
    api = f"http://127.0.0.1:{port}/api/articles/2/"

    def put_title(title: str) -> int:
        request = urllib.request.Request(
            api,
            method="PUT",
            data=json.dumps({"title": title}).encode(),
            headers={"If-Match": _readme_etag(), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)

    def get() -> tuple[str, dict[str, Any]]:
        with urllib.request.urlopen(api, timeout=30) as response:
            return response.headers["ETag"], json.loads(response.read())

    demo, printed = _start_demo(port, database)
    try:
        assert f"  Admin: http://127.0.0.1:{port}/admin/  user: admin  password: demo-test\n" in printed
        assert not any("W163" in line or "Data kept" in line for line in printed), "".join(printed)
        etag, article = get()
        assert (etag, article["version"]) == (_readme_etag(), 1)
        assert put_title("Roadmap 2027") == 200
    finally:
        _stop(demo)

    demo, printed = _start_demo(port, database)
    try:
        etag, article = get()
        assert (article["title"], article["version"]) == ("Roadmap 2027", 2)
        assert any("`python3 dev.py demo --fresh` starts over" in line for line in printed)
    finally:
        _stop(demo)

    demo, printed = _start_demo(port, database, "--fresh")
    try:
        etag, article = get()
        assert (etag, article["title"], article["version"]) == (_readme_etag(), "Roadmap", 1)
        assert not any("W163" in line for line in printed), "".join(printed)
    finally:
        _stop(demo)


def test_stopping_dev_demo_by_its_pid_stops_the_server(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CONCURRENCY_DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "DEMO_PASSWORD": "demo-test",
        "PYTHONUNBUFFERED": "1",
    }
    demo = subprocess.Popen(
        [sys.executable, "dev.py", "demo", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not _answers(port):
            assert demo.poll() is None, f"dev.py demo exited with {demo.returncode}"
            assert time.monotonic() < deadline, "the demo did not start within 300 s"
            time.sleep(0.5)
        os.kill(demo.pid, signal.SIGTERM)
        demo.wait(60)
        deadline = time.monotonic() + 30
        while _answers(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _answers(port), "runserver outlived dev.py demo"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(30)


# -- the screenshots -----------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


DOCUMENTS = [
    "README.md",
    "docs/guide/admin.rst",
    "docs/guide/conflict-resolution.rst",
    "docs/guide/forms.rst",
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_docs_show_the_committed_screenshots(document: str) -> None:
    text = (ROOT / document).read_text()
    shown = set(re.findall(r"screenshots/([\w-]+\.png)", text))
    assert shown, f"{document} shows no screenshot"
    for name in shown:
        assert _png_size(SCREENSHOTS / name)[0] >= WIDTHS.get(name, 1000)
    everywhere = set()
    for doc in DOCUMENTS:
        everywhere |= set(re.findall(r"screenshots/([\w-]+\.png)", (ROOT / doc).read_text()))
    assert everywhere == set(PICTURES)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_screenshots_command_retakes_every_picture(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "docs/screenshots.py", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PICTURES)
    for name in PICTURES:
        width, height = _png_size(tmp_path / name)
        assert width == WIDTHS.get(name, 1280) and height >= 400
