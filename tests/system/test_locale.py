"""The shipped translation catalog stays in step with the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils.functional import Promise

from concurrency.forms import ConcurrentForm, VersionField

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "concurrency"
CATALOG = PACKAGE / "locale" / "en" / "LC_MESSAGES"

needs_gettext = pytest.mark.skipif(
    not (shutil.which("xgettext") and shutil.which("msgfmt")),
    reason="GNU gettext is missing (apt-get install gettext; .ci/run installs it)",
)


def _unquote(lines: list[str]) -> str:
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', " ".join(lines)))


def msgids(po: Path) -> set[tuple[str, str]]:
    """Return (msgctxt, msgid) of every entry of a .po file, header excluded."""
    entries: set[tuple[str, str]] = set()
    for block in po.read_text(encoding="utf-8").split("\n\n"):
        keyword, collected = None, {}  # type: ignore[var-annotated]
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            match = re.match(r"(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) ", line)
            if match:
                keyword = match.group(1)
                collected[keyword] = [line[match.end() :]]
            elif keyword and line.startswith('"'):
                collected[keyword].append(line)
        if "msgid" in collected:
            msgid = _unquote(collected["msgid"])
            if msgid:
                entries.add((_unquote(collected.get("msgctxt", [])), msgid))
    return entries


@needs_gettext
def test_po_file_lists_every_translatable_message(tmp_path: Path) -> None:
    copy = tmp_path / "concurrency"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-P", "-m", "django", "makemessages", "-l", "en", "--add-location=file"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
    )
    fresh = msgids(copy / "locale" / "en" / "LC_MESSAGES" / "django.po")
    shipped = msgids(CATALOG / "django.po")
    assert fresh, "makemessages found no messages"
    assert shipped == fresh, (
        "src/concurrency/locale is stale: run "
        "`cd src/concurrency && django-admin makemessages -l en --add-location=file && "
        "django-admin compilemessages`"
    )


@needs_gettext
def test_mo_file_is_compiled_from_the_po_file(tmp_path: Path) -> None:
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "-o", str(compiled), str(CATALOG / "django.po")], check=True)
    assert compiled.read_bytes() == (CATALOG / "django.mo").read_bytes()


def test_form_messages_are_lazy_translations() -> None:
    messages = [
        *ConcurrentForm.default_error_messages.values(),
        *VersionField.default_error_messages.values(),
    ]
    assert messages
    assert all(isinstance(message, Promise) for message in messages)
