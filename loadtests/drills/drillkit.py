"""What the drills share: the cluster's settings and commands, tokens, HTTP calls, SQL,
the load they run in the background, and the one line of figures each prints.

Standard library only, so `make drills` needs nothing but python3 on the machine.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLUSTER = HERE.parent / "cluster"


class Broken(Exception):
    """A promise the drill checks did not hold."""


def log(message):
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------
# the cluster


def cluster(*args, check=True):
    """`loadtests/cluster ARGS...`; its progress goes to our stderr."""
    result = subprocess.run([str(CLUSTER), *args], stdin=subprocess.DEVNULL, stdout=sys.stderr)
    if check and result.returncode != 0:
        raise Broken(f"loadtests/cluster {' '.join(args)} exited {result.returncode}")
    return result.returncode


def cluster_output(*args, check=True):
    """`loadtests/cluster ARGS...` quietly: (exit status, stdout)."""
    result = subprocess.run([str(CLUSTER), *args], stdin=subprocess.DEVNULL, capture_output=True,
                            env={**os.environ, "RUST_LOG": "warn"})
    if check and result.returncode != 0:
        raise Broken(f"loadtests/cluster {' '.join(args)} exited {result.returncode}: "
                     f"{result.stderr.decode()[-300:]}")
    return result.returncode, result.stdout.decode()


def cluster_env():
    out = subprocess.run([str(CLUSTER), "env", "--json"], check=True, capture_output=True)
    return json.loads(out.stdout)


ENV = cluster_env()
BASE_URL = ENV["STOREOPS_URL"]
ADMIN_PORTS = dict(kv.split("=") for kv in ENV["CLUSTER_ADMIN_PORTS"].split(","))


# ---------------------------------------------------------------------------------
# tokens (HS256, the claims `storeops token` signs)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(role, store=None, region=None, sub=None, ttl=7200, secret=None):
    secret = (secret or ENV["AUTH_JWT_SECRET"]).encode()
    now = int(time.time())
    claims = {"sub": sub or f"drill-{role}", "role": role, "exp": now + ttl, "iat": now}
    if store:
        claims["store_id"] = store
    if region:
        claims["region"] = region
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = _b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


# ---------------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body or b"null")

    @property
    def problem(self):
        return self.headers.get("content-type", "").startswith("application/problem+json")


def call(method, path, tok=None, body=None, headers=None, url=BASE_URL, timeout=30):
    """One request on a fresh connection; raises OSError on connection failure."""
    host = url.split("://", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def expect(method, path, tok, body=None, status=(200, 201, 202), **kw):
    r = call(method, path, tok, body, **kw)
    if r.status not in status:
        raise Broken(f"{method} {path} answered {r.status}: {r.body[:300]!r}")
    return r.json()


def readyz(name):
    """(status, body) of a process's /readyz; status 0 if it does not answer."""
    try:
        r = call("GET", "/readyz", url=f"http://127.0.0.1:{ADMIN_PORTS[name]}", timeout=3)
        return r.status, r.body.decode(errors="replace")
    except OSError:
        return 0, ""


def metric_sum(name, metric, **labels):
    """Sum of a metric's samples on one process's /metrics, filtered by labels."""
    try:
        r = call("GET", "/metrics", url=f"http://127.0.0.1:{ADMIN_PORTS[name]}", timeout=3)
    except OSError:
        return 0.0
    total = 0.0
    for line in r.body.decode().splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------------------------
# SQL on the cluster's primary (psql from the PostgreSQL install)


def sql(query, url=None, timeout=30):
    """Rows of a query as lists of strings."""
    psql = Path(ENV["STOREOPS_PG_BIN"]) / "psql"
    env = {**os.environ, "PGCONNECT_TIMEOUT": "3"}
    out = subprocess.run(
        [str(psql), url or ENV["DATABASE_URL"], "-X", "-qAt", "-F", "\t", "-v",
         "ON_ERROR_STOP=1", "-c", query],
        capture_output=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise Broken(f"SQL failed: {out.stderr.decode().strip()[:300]} in: {query[:120]}")
    return [line.split("\t") for line in out.stdout.decode().splitlines() if line]


def sql_value(query, **kw):
    rows = sql(query, **kw)
    return rows[0][0] if rows else None


class RowLock:
    """Holds `SELECT ... FOR UPDATE` on some rows in an open transaction until released,
    so that a writer needing them (a foreign-key check, an update) waits mid-transaction."""

    def __init__(self, table, where):
        self.query = f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE;"
        self.proc = None

    def __enter__(self):
        psql = Path(ENV["STOREOPS_PG_BIN"]) / "psql"
        self.proc = subprocess.Popen([str(psql), ENV["DATABASE_URL"], "-X", "-qAt"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write(f"BEGIN;\n{self.query}\n\\echo locked\n")
        self.proc.stdin.flush()
        while (line := self.proc.stdout.readline()) and line.strip() != "locked":
            pass
        return self

    def release(self):
        if self.proc and self.proc.poll() is None:
            self.proc.communicate("ROLLBACK;\n\\q\n", timeout=30)

    def __exit__(self, *exc):
        self.release()


def db_now():
    return sql_value("SELECT clock_timestamp()")


def outbox_pending(since):
    """Events written since `since` (a timestamp) that no relay has published yet."""
    return int(sql_value(
        f"SELECT count(*) FROM outbox WHERE published_at IS NULL AND created_at >= '{since}'"))


def wait_until(what, predicate, timeout, interval=0.5):
    """Seconds it took; Broken if it never happened."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (Broken, OSError) as e:
            last = e
        else:
            last = None
        if time.monotonic() - started > timeout:
            raise Broken(f"{what}: not within {timeout}s" + (f" ({last})" if last else ""))
        time.sleep(interval)


# ---------------------------------------------------------------------------------
# background load: a pluggable command writing one JSON line per request


def fixture_stores(n=40):
    """The first n stores (id, code, region), read through the API as HQ."""
    page = expect("GET", f"/api/v1/stores?limit={min(n, 200)}", token("hq"))
    return [(s["id"], s["code"], s["region"]) for s in page["items"][:n]]


class Load:
    """Runs DRILL_LOAD_CMD (default: loadtests/drills/load) until stopped.

    The contract, so another tool (goose) can replace it: it gets STOREOPS_URL,
    AUTH_JWT_SECRET, DRILL_RATE (requests/s), DRILL_MIX and DRILL_REQUEST_LOG in its
    environment, runs until SIGINT, and appends one JSON object per finished request to
    DRILL_REQUEST_LOG: {"t": unix start, "ms": latency, "m": method, "op": name,
    "st": HTTP status or 0 for a connection error/timeout, "ct": content type,
    "src": X-Data-Source or null, "id": a created task's id or null}.
    """

    def __init__(self, name, rate=100, mix="default"):
        self.path = Path(ENV["STOREOPS_CLUSTER_HOME"]) / "log" / f"drill-{name}-load.jsonl"
        self.rate, self.mix = rate, mix
        self.proc = None

    def __enter__(self):
        self.path.unlink(missing_ok=True)
        cmd = os.environ.get("DRILL_LOAD_CMD", str(HERE / "load"))
        env = {**os.environ, **ENV, "DRILL_RATE": str(self.rate), "DRILL_MIX": self.mix,
               "DRILL_REQUEST_LOG": str(self.path)}
        self.proc = subprocess.Popen(cmd, shell=True, env=env, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_until("the load's first requests", lambda: len(self.records()) > 0, 30, 0.2)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.records()

    def __exit__(self, *exc):
        self.stop()

    def records(self):
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written
        return out


def describe(records, limit=5):
    return "; ".join(
        f"{r['m']} {r['op']} -> {r['st'] or 'no answer'} after {r['ms']:.0f} ms ({r.get('ct') or ''})"
        for r in records[:limit])


# ---------------------------------------------------------------------------------
# results


def figures(drill, ok, **values):
    """The drill's one line of figures."""
    parts = " ".join(f"{k}={v}" for k, v in values.items())
    line = f"DRILL {drill} {'PASS' if ok else 'FAIL'} {parts}"
    print(line, flush=True)
    return line


def new_id():
    return str(uuid.uuid4())
