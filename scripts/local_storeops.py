"""A storeops of a test run's own on loopback, for the Python test drivers.

Used by scripts/api_fuzz.py (Schemathesis) and scripts/store_app_day.py (the generated
client): a database of the run's own on the dev-env primary (and its replica), the
binary's `migrate up` and `seed`, `storeops all` on free loopback ports until /readyz
answers, tokens from `storeops token`, and the cleanup of what the run (or an earlier,
interrupted one) left behind. Needs the environment of `scripts/dev-env env`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(url: str, name: str) -> str:
    head, _, tail = url.rpartition("/")
    query = ""
    if "?" in tail:
        query = "?" + tail.split("?", 1)[1]
    return f"{head}/{name}{query}"


def psql(url: str, sql: str) -> str:
    pg_bin = os.environ.get("STOREOPS_PG_BIN", "")
    exe = os.path.join(pg_bin, "psql") if pg_bin else "psql"
    out = subprocess.run(
        [exe, "-v", "ON_ERROR_STOP=1", "-qAt", url, "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout


def run_env(db_name: str, *, secret: str, topology_prefix: str, **extra: str) -> dict[str, str]:
    """The process environment of a run on database `db_name` (primary and replicas)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=with_database(os.environ["DATABASE_URL"], db_name),
        AUTH_JWT_SECRET=secret,
        AMQP_TOPOLOGY_PREFIX=topology_prefix,
        LOG_FORMAT="json",
        **extra,
    )
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    replicas = [u for u in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if u]
    env["DATABASE_REPLICA_URLS"] = ",".join(with_database(u, db_name) for u in replicas)
    return env


def create_seeded_database(binary: Path, env: dict[str, str], db_name: str, *, stores: int, days: int) -> None:
    """CREATE DATABASE on the dev-env primary, then the binary's migrations and seed."""
    psql(os.environ["DATABASE_URL"], f'CREATE DATABASE "{db_name}"')
    for command in (["migrate", "up"], ["seed", "--stores", str(stores), "--days", str(days)]):
        subprocess.run([str(binary), *command], env=env, check=True, capture_output=True, timeout=300)


def drop_database(db_name: str, log: Log = stderr_log) -> None:
    try:
        psql(os.environ["DATABASE_URL"], f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    except Exception as e:  # noqa: BLE001 - cleanup goes on
        log(f"could not drop {db_name}: {e}")


def drop_stale_databases(prefix: str, log: Log = stderr_log) -> None:
    """Databases `<prefix><pid>` of earlier runs whose process is gone (an interrupted run)."""
    admin_url = os.environ["DATABASE_URL"]
    pattern = prefix.replace("_", "\\_") + "%"
    try:
        names = psql(admin_url, f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}'").split()
    except subprocess.CalledProcessError:
        return
    for name in names:
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            log(f"dropping stale {name}")
            psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queues(prefix: str, log: Log = stderr_log) -> None:
    """Best effort: the run's queues (rabbitmqctl, when this user may use it)."""
    ctl = shutil.which("rabbitmqctl")
    if not ctl:
        return
    try:
        out = subprocess.run([ctl, "-q", "list_queues", "name"], capture_output=True, text=True, timeout=60)
        names = [n for n in out.stdout.split() if n.startswith(prefix + ".")]
        for name in names:
            subprocess.run([ctl, "-q", "delete_queue", name], capture_output=True, timeout=60)
        if names:
            log(f"deleted {len(names)} queues {prefix}.*")
    except (OSError, subprocess.TimeoutExpired):
        pass


def png(width: int = 48, height: int = 32) -> bytes:
    """A real PNG (grey), written with the standard library: a photo to upload."""
    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def put_upload(upload: dict, data: bytes) -> int:
    """PUTs `data` where a photo grant's `upload` says, with its signed headers; the
    object store's status."""
    request = urllib.request.Request(upload["url"], data=data, method="PUT")
    for name, value in upload["headers"].items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def token(binary: Path, secret: str, role: str, sub: str, store: str | None = None,
          region: str | None = None) -> str:
    args = [str(binary), "token", "--role", role, "--sub", sub, "--ttl", "86400"]
    if store:
        args += ["--store", store]
    if region:
        args += ["--region", region]
    env = dict(os.environ, AUTH_JWT_SECRET=secret)
    return subprocess.run(args, env=env, check=True, capture_output=True, text=True, timeout=30).stdout.strip()


class Server:
    """`storeops all` (with `args`) on free loopback ports, its output in `log_path`."""

    def __init__(self, binary: Path, env: dict[str, str], log_path: Path, args: list[str]):
        self.binary = binary
        self.env = env
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.http_port = free_port()
        self.admin_port = free_port()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        env = dict(self.env)
        env.update(HTTP_ADDR=f"127.0.0.1:{self.http_port}", ADMIN_ADDR=f"127.0.0.1:{self.admin_port}")
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "all", *self.args],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"storeops all exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise Failed(f"/readyz did not answer 200 within 90 s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()
