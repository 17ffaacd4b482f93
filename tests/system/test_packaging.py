"""The sdist, as a stranger who downloads it meets it: the README's commands run from it."""

from __future__ import annotations

import tarfile
from pathlib import Path

from hatchling.builders.sdist import SdistBuilder

ROOT = Path(__file__).resolve().parents[2]


def test_sdist_holds_what_the_readme_commands_need(tmp_path: Path) -> None:
    (built,) = SdistBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    with tarfile.open(built) as sdist:
        top, *_ = sdist.getnames()[0].split("/")
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}

    # python3 dev.py demo / test / setup docs / bench, bash .ci/run
    for needed in (
        "dev.py",
        "manage.py",
        "pyproject.toml",
        "README.md",
        "CHANGES.md",
        "CONTRIBUTING.md",
        "LICENSE",
        ".ci/run",
        "bench/save.py",
        "docs/conf.py",
        "docs/index.rst",
        "docs/screenshots.py",
        "docs/_static/screenshots/resolution-light.png",
        "tests/settings.py",
        "tests/conftest.py",
        "tests/core/test_save.py",
        "tests/demo/migrations/0001_initial.py",
        "tests/demo/management/commands/demo_setup.py",
        "src/concurrency/__init__.py",
        "src/concurrency/py.typed",
    ):
        assert needed in names, f"{needed} is missing from {top}"
    # Nothing of a working copy: no databases, virtualenvs, built docs or bytecode.
    strays = [n for n in names if n.endswith((".sqlite3", ".pyc")) or n.startswith((".venv", "docs/_build"))]
    assert strays == []
