#!/usr/bin/env python3
"""Set up a virtualenv and run the demo site, the tests or the benchmarks.

    python3 dev.py demo [--fresh] [ADDR]
                                   # demo site on http://127.0.0.1:8000/admin/ (SQLite, demo.sqlite3);
                                   # --fresh deletes demo.sqlite3 first: the sample data as new
    python3 dev.py test [ARGS]     # the test suite (pytest ARGS)
    python3 dev.py bench [ARGS]    # python bench/save.py ARGS
    python3 dev.py manage [ARGS]   # manage.py of the demo project
    python3 dev.py setup [GROUPS]  # only create .venv with the dependency groups (default: test),
                                   # e.g. `setup test docs` for the docs build, `setup test lint docs`
    python3 dev.py screenshots     # retake docs/_static/screenshots/*.png from the demo in Chromium
    python3 dev.py cluster up|down|status
                                   # Galera, PostgreSQL primary + standby, PgBouncer on loopback

Environment:
    CONCURRENCY_DB      sqlite (default), postgresql or mariadb; with `cluster up`:
                        galera, postgresql-replica or pgbouncer
    CONCURRENCY_PYTHON  interpreter for the virtualenv (default: this one)
    CONCURRENCY_DJANGO  Django requirement, e.g. "Django~=6.1.0" (default: newest)
    CONCURRENCY_VENV    virtualenv folder (default: .venv)
    DEMO_PASSWORD       password of the demo's `admin` user (default: a new random one each start)
Only the standard library is used here, so it runs on a fresh machine.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def venv_dir() -> Path:
    return ROOT / os.environ.get("CONCURRENCY_VENV", ".venv")


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


def setup(groups: list[str]) -> Path:
    """Create the virtualenv and install the project with the given groups.

    Nothing is installed when an earlier call installed these groups (or more) from the same
    pyproject.toml and Django requirement: `demo` after `test` reuses what `test` installed.
    """
    venv = venv_dir()
    venv.mkdir(parents=True, exist_ok=True)
    # One installer at a time per virtualenv: CI runs several legs on one venv at once.
    with open(venv / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install(venv, groups)


def _install(venv: Path, groups: list[str]) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        run(os.environ.get("CONCURRENCY_PYTHON", sys.executable), "-m", "venv", venv)
        run(python, "-m", "pip", "install", "-q", "--upgrade", "pip>=25.1")
    db = os.environ.get("CONCURRENCY_DB", "sqlite")
    if db in ("mariadb", "mysql", "galera") and "mysql" not in groups:
        groups = [*groups, "mysql"]
    django = os.environ.get("CONCURRENCY_DJANGO", "")
    digest = hashlib.sha256("|".join([django, (ROOT / "pyproject.toml").read_text()]).encode()).hexdigest()
    stamp = venv / ".installed"
    # The stamp: the digest, then the groups installed with it (pip only adds, so they add up).
    installed_digest, *installed = stamp.read_text().split() if stamp.exists() else [""]
    if installed_digest != digest:
        installed = []
    if not set(groups) <= set(installed):
        cmd: list[str | Path] = [python, "-m", "pip", "install", "-q", "-e", "."]
        for group in groups:
            cmd += ["--group", group]
        if django:
            cmd.append(django)
        run(*cmd)
        stamp.write_text(" ".join([digest, *sorted({*installed, *groups})]))
    return python


def demo(args: list[str]) -> None:
    fresh = "--fresh" in args
    args = [a for a in args if a != "--fresh"]
    python = setup(["demo"])
    env = {**os.environ, "CONCURRENCY_DB": "sqlite", "CONCURRENCY_DEMO": "1"}
    database = Path(os.environ.get("CONCURRENCY_DEMO_DB") or ROOT / "demo.sqlite3")
    kept = database.exists() and not fresh
    if fresh and database.exists():
        print(f"+ rm {database}", flush=True)
        database.unlink()
    run(python, "manage.py", "migrate", "--noinput", env=env)
    password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
    run(python, "manage.py", "demo_setup", "--password", password, env=env)
    addr = args[0] if args else "127.0.0.1:8000"
    print(f"\n  Admin: http://{addr}/admin/  user: admin  password: {password}", flush=True)
    if not os.environ.get("DEMO_PASSWORD"):
        print("  (a new one each start; `DEMO_PASSWORD=... python3 dev.py demo` sets it)")
    if kept:
        print(f"  Data kept from the last run ({database.name}); `python3 dev.py demo --fresh` starts over.")
    print(flush=True)
    # Become the server (no autoreloader child): stopping this process stops the demo.
    argv = [str(python), "manage.py", "runserver", "--noreload", addr, *args[1:]]
    print("+", " ".join(argv), flush=True)
    os.chdir(ROOT)
    os.execve(argv[0], argv, env)


def main() -> None:
    command, *args = sys.argv[1:] or ["help"]
    if command == "test":
        python = setup(["test"])
        run(python, "-m", "pytest", *args)
    elif command == "demo":
        demo(args)
    elif command == "bench":
        python = setup(["test"])
        run(python, *(args or ["bench/save.py"]))
    elif command == "manage":
        python = setup(["test"])
        run(python, "manage.py", *args)
    elif command == "cluster":
        sys.path.insert(0, str(ROOT / "tests" / "support"))
        import cluster

        sys.exit(cluster.main(args))
    elif command == "setup":
        setup(args or ["test"])
    elif command == "screenshots":
        python = setup(["test"])
        run(python, "docs/screenshots.py", *args)
    else:
        print(__doc__)
        sys.exit(0 if command == "help" else 2)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
    except KeyboardInterrupt:
        sys.exit(130)
