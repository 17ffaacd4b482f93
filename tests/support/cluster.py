"""Start and stop the clustered databases of the cluster test legs, on loopback only.

    python3 dev.py cluster up        # install the Debian packages if missing, start everything
    python3 dev.py cluster status    # what listens where
    python3 dev.py cluster down      # stop everything (the data directories are kept)
    python3 dev.py cluster stop galera3 | start galera3 | restart pgbouncer

- MariaDB Galera, three nodes (multi-primary, rsync state transfer) on 127.0.0.1:3311, 3312, 3313;
  a TCP user ``concurrency`` (password ``concurrency``) for the tests.
- PostgreSQL 15 primary on 127.0.0.1:5442 and a hot standby on 5443 (streaming replication
  from ``pg_basebackup``; the standby is the primary's synchronous standby, used only by
  sessions that ask for ``synchronous_commit = remote_apply``).
- PgBouncer in transaction pooling mode on 127.0.0.1:6442, in front of the primary.

Everything lives under ``CONCURRENCY_CLUSTER_DIR`` (default ``/tmp/concurrency-cluster``): its
own data directories, sockets and logs. The single servers on 5432 and 3306 are never touched.
Every wait is bounded; running ``up`` twice starts only what is not running. Only the
standard library is used (this runs before any virtualenv exists). Needs root (it runs the
servers as the ``mysql`` and ``postgres`` users).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT_DIR = Path(os.environ.get("CONCURRENCY_CLUSTER_DIR", "/tmp/concurrency-cluster"))
HOST = "127.0.0.1"
GALERA_PORTS = {1: 3311, 2: 3312, 3: 3313}
GALERA_USER = "concurrency"
GALERA_PASSWORD = "concurrency"
PRIMARY_PORT = 5442
STANDBY_PORT = 5443
PGBOUNCER_PORT = 6442
PACKAGES = {
    "galera-4": "/usr/lib/galera/libgalera_smm.so",
    "mariadb-server": "/usr/sbin/mariadbd",
    "rsync": "/usr/bin/rsync",
    "iproute2": "/usr/bin/ss",
    "postgresql": "/usr/lib/postgresql",
    "pgbouncer": "/usr/sbin/pgbouncer",
}
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def log(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def wait_for(what: str, test: Callable[[], bool], timeout: float) -> None:
    """Poll ``test`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster: gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(0.2)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def run(*args: str | Path, user: str | None = None, timeout: float = 120, check: bool = True) -> str:
    cmd = [str(a) for a in args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode:
        raise SystemExit(f"cluster: {' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def install() -> None:
    """Install the Debian packages that are missing (the only thing done outside ROOT_DIR)."""
    missing = [name for name, path in PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    # No service is started by the packages: policy-rc.d denies it in containers, and
    # on a full system the Debian units listen on the default ports we never use here.
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, timeout=900)


def chown(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for sub in path.rglob("*"):
        shutil.chown(sub, user, user)


def pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def stop_pid(pidfile: Path, what: str, sig: int = signal.SIGTERM) -> None:
    pid = pid_alive(pidfile)
    if pid is None:
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid_alive(pidfile) == pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        if pid_alive(pidfile) == pid:
            log(f"{what} did not stop in {STOP_TIMEOUT:.0f}s; killing it")
            os.kill(pid, signal.SIGKILL)


# --- MariaDB Galera ---------------------------------------------------------------


def galera_dir(node: int) -> Path:
    return ROOT_DIR / "galera" / f"node{node}"


def galera_cnf(node: int) -> Path:
    base = galera_dir(node)
    peers = ",".join(f"{HOST}:{4570 + n}" for n in GALERA_PORTS)
    options = ";".join(
        [
            f"base_port={4570 + node}",
            f"gmcast.listen_addr=tcp://{HOST}:{4570 + node}",
            f"ist.recv_addr={HOST}:{4580 + node}",
            "gcache.size=64M",
            "evs.suspect_timeout=PT3S",
            "evs.inactive_timeout=PT6S",
        ]
    )
    text = f"""[mysqld]
user = mysql
datadir = {base}/data
socket = {base}/mysqld.sock
pid-file = {base}/mysqld.pid
log-error = {base}/error.log
port = {GALERA_PORTS[node]}
bind-address = {HOST}
skip-name-resolve
performance_schema = OFF
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 2
max_connections = 300
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_cluster_name = concurrency_cluster
wsrep_cluster_address = gcomm://{peers}
wsrep_node_name = node{node}
wsrep_node_address = {HOST}:{4570 + node}
wsrep_provider_options = "{options}"
wsrep_sst_method = rsync
wsrep_sst_receive_address = {HOST}:{4590 + node}
"""
    path = base / "my.cnf"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def galera_sql(node: int, sql: str, timeout: float = 10) -> str | None:
    """Run ``sql`` on ``node`` as root over its socket; None if the node does not answer."""
    base = galera_dir(node)
    try:
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={base}/mysqld.sock", "-uroot", "-N", "-B", "-e", sql],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def galera_synced(node: int) -> bool:
    out = galera_sql(node, "SHOW STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state_comment')")
    return bool(out) and "wsrep_ready\tON" in out and "Synced" in out  # type: ignore[operator]


def galera_running(node: int) -> bool:
    return pid_alive(galera_dir(node) / "mysqld.pid") is not None


def galera_start(node: int, bootstrap: bool = False) -> None:
    base = galera_dir(node)
    (base / "data").mkdir(parents=True, exist_ok=True)
    cnf = galera_cnf(node)
    chown(base, "mysql")
    if bootstrap:
        if not (base / "data" / "mysql").exists():
            log(f"galera{node}: initializing")
            run("mariadb-install-db", f"--defaults-file={cnf}", "--skip-test-db", "--user=mysql")
        state = base / "data" / "grastate.dat"
        if state.exists():
            # This is a throwaway test cluster; `down` stops node 1 last, so it is current.
            state.write_text(state.read_text().replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1"))
    log(f"galera{node}: starting on {HOST}:{GALERA_PORTS[node]}{' (new cluster)' if bootstrap else ''}")
    args = ["setsid", "/usr/sbin/mariadbd", f"--defaults-file={cnf}"]
    if bootstrap:
        args.append("--wsrep-new-cluster")
    with open(base / "stdout.log", "ab") as out:
        subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    wait_for(f"galera{node} to be synced", lambda: galera_synced(node), BOOT_TIMEOUT)


def galera_stop(node: int, hard: bool = False) -> None:
    pidfile = galera_dir(node) / "mysqld.pid"
    if pid_alive(pidfile) is None:
        return
    log(f"galera{node}: {'killing' if hard else 'stopping'}")
    stop_pid(pidfile, f"galera{node}", signal.SIGKILL if hard else signal.SIGTERM)


def galera_up() -> None:
    running = [n for n in GALERA_PORTS if galera_running(n)]
    for node in GALERA_PORTS:
        if node in running:
            wait_for(f"galera{node} to be synced", functools.partial(galera_synced, node), BOOT_TIMEOUT)
            continue
        # Bootstrap a new cluster only when no node runs; otherwise join it.
        galera_start(node, bootstrap=not running)
        running.append(node)
    grant = (
        f"CREATE USER IF NOT EXISTS '{GALERA_USER}'@'{HOST}' IDENTIFIED BY '{GALERA_PASSWORD}';"
        f"GRANT ALL ON *.* TO '{GALERA_USER}'@'{HOST}' WITH GRANT OPTION;"
    )
    if galera_sql(1, grant) is None:
        raise SystemExit("cluster: could not create the Galera test user")


# --- PostgreSQL primary + hot standby, PgBouncer -----------------------------------


def pg_bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return str(versions[-1] / name)


def pg_dir(name: str) -> Path:
    return ROOT_DIR / "postgresql" / name


def pg_ready(port: int) -> bool:
    done = subprocess.run([pg_bin("pg_isready"), "-q", "-h", HOST, "-p", str(port)], check=False, timeout=10)
    return done.returncode == 0


def pg_ctl(name: str, action: str) -> None:
    data = pg_dir(name)
    log_file = data.parent / f"{name}.log"
    run(pg_bin("pg_ctl"), "-D", data, "-l", log_file, "-w", "-t", "60", action, user="postgres")


def pg_running(name: str) -> bool:
    return pid_alive(pg_dir(name) / "postmaster.pid") is not None


def primary_up() -> None:
    data = pg_dir("primary")
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(data.parent, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        log("primary: initializing")
        run(pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", user="postgres")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"""
# concurrency cluster
listen_addresses = '{HOST}'
port = {PRIMARY_PORT}
unix_socket_directories = '{data.parent}'
max_connections = 300
shared_buffers = 64MB
fsync = off
full_page_writes = off
timezone = 'UTC'
wal_level = replica
max_wal_senders = 5
wal_keep_size = 256MB
hot_standby = on
synchronous_standby_names = 'standby'
# Only sessions that ask for remote_apply wait for the standby (see tests/settings.py).
synchronous_commit = local
"""
            )
    if not pg_running("primary"):
        log(f"primary: starting on {HOST}:{PRIMARY_PORT}")
        pg_ctl("primary", "start")
    wait_for("the primary", lambda: pg_ready(PRIMARY_PORT), BOOT_TIMEOUT)


def standby_up() -> None:
    data = pg_dir("standby")
    if not (data / "PG_VERSION").exists():
        log("standby: pg_basebackup from the primary")
        shutil.rmtree(data, ignore_errors=True)
        run(
            pg_bin("pg_basebackup"), "-h", HOST, "-p", str(PRIMARY_PORT), "-U", "postgres",
            "-D", data, "-R", "-X", "stream", "-c", "fast", user="postgres",
        )  # fmt: skip
        with open(data / "postgresql.auto.conf", "a") as conf:
            conf.write(
                f"port = {STANDBY_PORT}\n"
                f"primary_conninfo = 'host={HOST} port={PRIMARY_PORT} "
                "user=postgres application_name=standby'\n"
            )
    if not pg_running("standby"):
        log(f"standby: starting on {HOST}:{STANDBY_PORT}")
        pg_ctl("standby", "start")
    wait_for("the standby", lambda: pg_ready(STANDBY_PORT), BOOT_TIMEOUT)

    def streaming() -> bool:
        out = run(
            pg_bin("psql"), "-h", HOST, "-p", str(PRIMARY_PORT), "-U", "postgres", "-Atc",
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
            check=False,
        )  # fmt: skip
        return out.strip() == "sync"

    wait_for("the standby to stream from the primary", streaming, BOOT_TIMEOUT)


def pgbouncer_dir() -> Path:
    return ROOT_DIR / "pgbouncer"


def pgbouncer_up() -> None:
    base = pgbouncer_dir()
    base.mkdir(parents=True, exist_ok=True)
    ini = base / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
* = host={HOST} port={PRIMARY_PORT}

[pgbouncer]
listen_addr = {HOST}
listen_port = {PGBOUNCER_PORT}
unix_socket_dir =
auth_type = trust
auth_file = {base}/userlist.txt
admin_users = postgres
pool_mode = transaction
; Hand each transaction the server connection idle the longest, so consecutive
; transactions of one client land on different server sessions.
server_round_robin = 1
default_pool_size = 8
min_pool_size = 2
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
pidfile = {base}/pgbouncer.pid
logfile = {base}/pgbouncer.log
"""
    )
    (base / "userlist.txt").write_text('"postgres" ""\n')
    chown(base, "postgres")
    if pid_alive(base / "pgbouncer.pid") is None:
        log(f"pgbouncer: starting on {HOST}:{PGBOUNCER_PORT} (transaction pooling)")
        # PgBouncer refuses to run as root.
        run("pgbouncer", "-d", "-q", ini, user="postgres")
    wait_for("pgbouncer", lambda: listening(PGBOUNCER_PORT), BOOT_TIMEOUT)


def pgbouncer_release(database: str) -> None:
    """Close PgBouncer's server connections to ``database``, so that it can be dropped."""
    subprocess.run(
        [pg_bin("psql"), "-h", HOST, "-p", str(PGBOUNCER_PORT), "-U", "postgres", "-q",
         "-c", f"KILL {database}", "-c", f"RESUME {database}", "pgbouncer"],
        check=False, capture_output=True, timeout=30,
    )  # fmt: skip


def pgbouncer_stop(hard: bool = False) -> None:
    """Stop PgBouncer: SIGINT waits for transactions to end, SIGTERM drops every client at once."""
    if pid_alive(pgbouncer_dir() / "pgbouncer.pid") is not None:
        log(f"pgbouncer: {'killing' if hard else 'stopping'}")
        stop_pid(pgbouncer_dir() / "pgbouncer.pid", "pgbouncer", signal.SIGTERM if hard else signal.SIGINT)


# --- commands -------------------------------------------------------------------------


def up() -> None:
    if os.geteuid() != 0:
        raise SystemExit("cluster: run as root (the servers run as the mysql and postgres users)")
    install()
    ROOT_DIR.mkdir(parents=True, exist_ok=True)
    ROOT_DIR.chmod(0o755)
    start = time.monotonic()
    galera_up()
    primary_up()
    standby_up()
    pgbouncer_up()
    log(f"up in {time.monotonic() - start:.1f}s")
    status()


def down() -> None:
    start = time.monotonic()
    pgbouncer_stop()
    for name in ("standby", "primary"):
        if pg_running(name):
            log(f"{name}: stopping")
            pg_ctl(name, "stop")
    # Node 1 last: it is then the one safe to bootstrap from.
    for node in sorted(GALERA_PORTS, reverse=True):
        galera_stop(node)
    log(f"down in {time.monotonic() - start:.1f}s")


def status() -> int:
    rows = []
    for node, port in GALERA_PORTS.items():
        state = "synced" if galera_synced(node) else ("starting" if galera_running(node) else "down")
        rows.append((f"galera{node}", f"{HOST}:{port}", state, f"MariaDB Galera (user {GALERA_USER})"))
    for name, port, what in (
        ("primary", PRIMARY_PORT, "PostgreSQL primary"),
        ("standby", STANDBY_PORT, "PostgreSQL hot standby"),
        ("pgbouncer", PGBOUNCER_PORT, "PgBouncer, transaction pooling, to the primary"),
    ):
        rows.append((name, f"{HOST}:{port}", "up" if listening(port) else "down", what))
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, (10, 16, 9, 0), strict=True)).rstrip())
    print(f"data: {ROOT_DIR}")
    return 0 if all(row[2] in ("synced", "up") for row in rows) else 1


def main(argv: list[str]) -> int:
    command, *args = argv or ["status"]
    if command == "up":
        up()
    elif command == "down":
        down()
    elif command == "status":
        return status()
    elif command in ("stop", "kill", "start", "restart") and args:
        for name in args:
            if name.startswith("galera") and name[6:].isdigit() and int(name[6:]) in GALERA_PORTS:
                node = int(name[6:])
                if command != "start":
                    galera_stop(node, hard=command == "kill")
                if command in ("start", "restart") and not galera_running(node):
                    galera_start(node, bootstrap=not any(galera_running(n) for n in GALERA_PORTS))
            elif name == "pgbouncer":
                if command != "start":
                    pgbouncer_stop(hard=command == "kill")
                if command in ("start", "restart"):
                    pgbouncer_up()
            else:
                raise SystemExit(f"cluster: unknown node {name!r} (galera1..3 or pgbouncer)")
    else:
        print(__doc__)
        return 0 if command == "help" else 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
