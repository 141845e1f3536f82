#!/usr/bin/env python3
"""The half of scripts/test-dashboards that speaks HTTP (Python standard library only).

  ports N       print N free loopback TCP ports
  drive ...     a webhook receiver, real traffic through every storeops feature, then `check`
  delete-broker-objects ...
                delete queues and exchanges by name prefix over AMQP 0-9-1 (a run's topology)
  check ...     every panel of dashboards/*.json and every rule of dashboards/alerts.yaml
                against a real Prometheus (also useful against the one `make run` starts:
                scripts/test-dashboards.py check --prometheus http://127.0.0.1:9090)

What `check` asserts, for every panel target (Grafana's variables replaced: `$__rate_interval`
by 1m, `$__range` by --range seconds, every multi-value variable by its "All" value `.*`):
  - the query parses and evaluates (no error from /api/v1/query);
  - it returns at least one series;
  - each label its legend names ({{label}}) is on the series it returns;
  - each metric selector in it matched a scraped series during the run, unless the
    selector is one that this run cannot produce (LEGITIMATELY_ABSENT, e.g. 5xx);
and for every alerting rule: the expression evaluates, the rule's health is ok once
evaluated, and every metric it reads was scraped. Failures are retried until --wait
seconds have passed (queue gauges are sampled every few seconds, jobs run on ticks), then
listed.
"""

import argparse
import http.server
import json
import pathlib
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

from local_storeops import png, put_upload

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"

# Selectors this run cannot make match, with the reason (the panels show 0 for them).
LEGITIMATELY_ABSENT = [
    ("storeops_http_requests_total", 'status=~"5.."', "the API answers no request with a 5xx"),
    ("storeops_client_requests_total", 'status_class="5xx"', "the API answers no request with a 5xx"),
    ("storeops_scheduler_job_runs_total", 'outcome!="success"', "no scheduler job fails or times out"),
]

SELECTOR = re.compile(r'\b((?:storeops|process)_[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?')
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


class Failure(Exception):
    pass


def log(message):
    print(f"test-dashboards: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# HTTP

def request(method, url, token=None, body=None, headers=None, user_agent=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    req.add_header("user-agent", user_agent or "storeops-dashboard-test/1")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, response_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, response_headers, raw = error.code, error.headers, error.read()
    content_type = response_headers.get("content-type", "")
    parsed = json.loads(raw) if raw and "json" in content_type else raw
    return status, response_headers, parsed


def prometheus_query(base, query):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, _, body = request("GET", url)
    if not isinstance(body, dict):
        raise Failure(f"Prometheus answered {status} without JSON")
    if body.get("status") != "success":
        raise Failure(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


# ---------------------------------------------------------------------------------------
# ports and the webhook receiver

def cmd_ports(args):
    sockets = []
    for _ in range(args.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in sockets))
    for s in sockets:
        s.close()


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook target: /ok answers 200, /fail 500 (retried), /reject 400 (dead-lettered)."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response({"/ok": 200, "/fail": 500, "/reject": 400}.get(self.path, 404))
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


# ---------------------------------------------------------------------------------------
# traffic

class Api:
    def __init__(self, base, binary):
        self.base = base
        self.binary = binary
        self.calls = 0

    def token(self, role, **claims):
        args = [self.binary, "token", "--role", role, "--sub", f"dashboards-{role}", "--ttl", "3600"]
        for name, value in claims.items():
            args += [f"--{name}", str(value)]
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    def call(self, method, path, token, expect, body=None, headers=None, base=None, user_agent=None):
        status, response_headers, parsed = request(
            method, (base or self.base) + path, token, body, headers, user_agent)
        self.calls += 1
        if status not in (expect if isinstance(expect, tuple) else (expect,)):
            raise Failure(f"{method} {path}: expected {expect}, got {status}: {str(parsed)[:400]}")
        return parsed, response_headers


def iso(delta_seconds):
    moment = datetime.now(timezone.utc) + timedelta(seconds=delta_seconds)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


CHECKLIST = [
    {"key": "lights", "label": "Lights on", "type": "check", "required": True},
    {"key": "fridge_temp", "label": "Fridge temperature", "type": "number", "required": True},
    {"key": "entrance", "label": "Entrance photo", "type": "photo", "required": True},
    {"key": "note", "label": "Remarks", "type": "text"},
]
ELSEWHERE = {"url": "https://cdn.example.com/e.jpg", "content_type": "image/jpeg", "item_key": "entrance"}


def answers_with_photo(api, task, token):
    """The checklist's answers, its photo uploaded as the app does: a grant, then a PUT
    of exactly the granted type and size to the object store."""
    photo = png()
    grant, _ = api.call("POST", f"/api/v1/tasks/{task['id']}/evidence", token, 201,
                        {"item_key": "entrance", "content_type": "image/png", "size_bytes": len(photo)})
    status = put_upload(grant["upload"], photo)
    if status != 200:
        raise Failure(f"the object store answered {status} to the upload")
    return {"answers": {"lights": True, "fridge_temp": 3.5, "entrance": {"evidence_id": grant["evidence_id"]}},
            "evidence": [ELSEWHERE]}
ANDROID = "storeops-android/3.12.7 (Pixel 8)"
IOS = "storeops-ios/4.2.19 (iPhone)"


def drive_traffic(api, second_api, receiver, started):
    hq = api.token("hq")
    stores, _ = api.call("GET", "/api/v1/stores?limit=5", hq, 200)
    stores = stores["items"]
    store, other = stores[0], stores[1]
    sid, region = store["id"], store["region"]
    manager = api.token("store_manager", store=sid)
    associate = api.token("associate", store=sid)
    regional = api.token("regional_manager", region=region)
    integration = api.token("integration")

    # Webhooks first, so the events below are delivered: one target answers 200, one 500
    # (retried, then dead-lettered after the last delay), one 400 (dead at once).
    events = ["task.created", "task.completed", "campaign.created"]
    for path in ("/ok", "/fail", "/reject"):
        api.call("POST", "/api/v1/webhooks", hq, 201,
                 {"url": receiver + path, "event_types": events, "description": f"dashboards {path}"})
    gone, _ = api.call("POST", "/api/v1/webhooks", hq, 201,
                       {"url": receiver + "/ok", "event_types": ["task.expired"]})
    api.call("GET", "/api/v1/webhooks", hq, 200)
    api.call("DELETE", f"/api/v1/webhooks/{gone['id']}", hq, 204)

    # Reading: the mobile apps' and managers' everyday calls.
    for token, agent in ((associate, ANDROID), (manager, IOS), (hq, None)):
        api.call("GET", "/api/v1/me", token, 200, user_agent=agent)
        api.call("GET", f"/api/v1/stores/{sid}/tasks?limit=20", token, 200, user_agent=agent)
    api.call("GET", "/api/v1/regions", hq, 200)
    api.call("GET", f"/api/v1/stores/{sid}", manager, 200)
    api.call("GET", f"/api/v1/stores/{sid}/staff", manager, 200)
    api.call("GET", f"/api/v1/stores?region={region}", regional, 200)
    api.call("GET", "/openapi.json", None, 200)

    # The caller's mistakes: 4xx only.
    api.call("GET", "/api/v1/stores", None, 401)
    api.call("GET", f"/api/v1/stores/{other['id']}/tasks", manager, (403, 404), user_agent=IOS)
    api.call("GET", "/api/v1/stores?limit=1000", hq, 422)
    api.call("GET", f"/api/v1/tasks/{uuid.uuid4()}", hq, 404)
    api.call("POST", f"/api/v1/stores/{sid}/tasks", manager, 422, {"priority": "high"})

    # Templates, versioned.
    template, _ = api.call("POST", "/api/v1/task-templates", hq, 201,
                           {"title": "Open the store", "review_required": True,
                            "estimated_minutes": 15, "checklist": CHECKLIST})
    api.call("PATCH", f"/api/v1/task-templates/{template['id']}", hq, 200,
             {"title": "Open the store (v2)"})
    api.call("GET", "/api/v1/task-templates", manager, 200)
    api.call("GET", f"/api/v1/task-templates/{template['id']}", manager, 200)

    # Tasks through their lifecycle.
    tasks = f"/api/v1/stores/{sid}/tasks"

    def create(body, key=None):
        headers = {"idempotency-key": key} if key else None
        task, _ = api.call("POST", tasks, manager, (200, 201), body, headers)
        return task

    def act(task, action, token, body=None, expect=200):
        return api.call("POST", f"/api/v1/tasks/{task['id']}/{action}", token, expect, body,
                        user_agent=ANDROID)[0]

    late = create({"title": "Count the float", "due_at": iso(3)})
    create({"title": "Check the fridges", "due_at": iso(1)})  # escalated twice, left open
    create({"title": "Expires soon", "due_at": iso(1), "expires_at": iso(2)})
    key = str(uuid.uuid4())
    simple = create({"title": "Clean the windows", "priority": "high"}, key)
    create({"title": "Clean the windows", "priority": "high"}, key)  # replayed
    _, headers = api.call("GET", f"/api/v1/tasks/{simple['id']}", manager, 200)
    api.call("PATCH", f"/api/v1/tasks/{simple['id']}", manager, 200, {"priority": "urgent"},
             {"if-match": headers["etag"]})
    api.call("PATCH", f"/api/v1/tasks/{simple['id']}", manager, 412, {"priority": "low"},
             {"if-match": '"999"'})
    act(simple, "start", associate)
    act(simple, "complete", associate, {})
    act(simple, "cancel", manager, None, 409)

    reviewed = create({"template_id": template["id"]})
    act(reviewed, "complete", associate, answers_with_photo(api, reviewed, associate))
    act(reviewed, "redo", manager, {"reason": "Photo is blurry"})
    act(reviewed, "complete", associate, answers_with_photo(api, reviewed, associate))
    api.call("GET", f"/api/v1/tasks/{reviewed['id']}/evidence", manager, 200)
    act(reviewed, "approve", manager)
    api.call("POST", f"/api/v1/tasks/{reviewed['id']}/comments", manager, 201, {"body": "Well done"})
    api.call("GET", f"/api/v1/tasks/{reviewed['id']}/history", manager, 200)
    act(create({"title": "Never mind"}), "cancel", manager)

    # A campaign to every store (fanned out by the campaigns workers).
    campaign, _ = api.call("POST", "/api/v1/campaigns", hq, 202,
                           {"title": "Christmas display", "target": {"all": True},
                            "due_local": "2030-12-20T10:00:00", "priority": "high"})
    api.call("GET", f"/api/v1/campaigns/{campaign['id']}", hq, 200)
    api.call("GET", f"/api/v1/campaigns/{campaign['id']}/stores", hq, 200)

    # An announcement to every store that staff must acknowledge: one store reads and
    # acknowledges it, the others are reminded and escalated (short delays above).
    notice, _ = api.call("POST", "/api/v1/announcements", hq, 201,
                         {"title": "Safety notice", "body": "Wear gloves in the cold room.",
                          "target": {"all": True}, "requires_ack": True, "priority": "high"})
    for _ in range(30):
        page, _ = api.call("GET", "/api/v1/me/announcements", associate, 200, user_agent=ANDROID)
        if page["items"]:
            break
        time.sleep(0.5)
    api.call("POST", f"/api/v1/announcements/{notice['id']}/read", associate, 200, user_agent=ANDROID)
    api.call("POST", f"/api/v1/announcements/{notice['id']}/acknowledge", manager, 200, user_agent=IOS)
    api.call("GET", f"/api/v1/announcements/{notice['id']}", hq, 200)
    api.call("GET", f"/api/v1/announcements/{notice['id']}/stores?unacknowledged=true", hq, 200)

    # Integrations: a price batch (one line for an unknown store: rejected), sent twice
    # (duplicate), a delivery and its update, a stock alert.
    batch = {"batch_id": f"PB-{uuid.uuid4()}", "effective_at": iso(86400),
             "items": [{"sku": "4607001", "name": "Milk 1 l", "new_price": 1.29, "currency": "EUR"},
                       {"sku": "4607002", "name": "Bread", "new_price": 2.5, "currency": "EUR",
                        "store_codes": [store["code"], "S99999"]}]}
    ingest, _ = api.call("POST", "/api/v1/integrations/price-changes", integration, 202, batch)
    api.call("POST", "/api/v1/integrations/price-changes", integration, (200, 202), batch)
    delivery = {"delivery_id": f"D-{uuid.uuid4()}", "store_code": store["code"], "supplier": "Dairy",
                "expected_at": iso(7200), "lines": [{"sku": "4607001", "qty": 24}]}
    api.call("POST", "/api/v1/integrations/deliveries", integration, 202, delivery)
    delivery["lines"][0]["qty"] = 30
    api.call("POST", "/api/v1/integrations/deliveries", integration, 202, delivery)
    api.call("POST", "/api/v1/integrations/stock-alerts", integration, 202,
             {"alert_id": f"A-{uuid.uuid4()}", "store_code": store["code"], "sku": "4607003",
              "on_hand": 0})
    api.call("GET", ingest["status_url"], integration, 200)
    api.call("GET", "/api/v1/stores", integration, 403)

    # Reports, on the api that reads the replica and on the one without replicas.
    for base in (api.base, second_api):
        for token in (hq, regional):
            api.call("GET", "/api/v1/reports/compliance?group_by=region", token, 200, base=base)
            api.call("GET", "/api/v1/reports/overdue", token, 200, base=base)
            api.call("GET", "/api/v1/reports/tasks.csv", token, 200, base=base)
        api.call("GET", "/api/v1/reports/compliance?group_by=store", hq, 200, base=base)

    # Done after its due time: on_time="false".
    time.sleep(max(0.0, 4 - (time.time() - started)))
    act(late, "start", associate)
    act(late, "complete", associate, {})
    return api.calls


def cmd_drive(args):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.receiver_port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = Api(args.api, args.bin)
    started = time.time()
    try:
        calls = drive_traffic(api, args.second_api, f"http://127.0.0.1:{args.receiver_port}", started)
    except Failure as failure:
        log(f"FAIL traffic: {failure}")
        return 1
    log(f"traffic: {calls} API calls in {time.time() - started:.1f}s")
    return cmd_check(args)


# ---------------------------------------------------------------------------------------
# the broker: just enough AMQP 0-9-1 to delete queues and exchanges

class Amqp:
    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 5672), timeout=10)
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(10, 10)  # connection.start
        self.send(0, 10, 11, struct.pack(">I", 0) + shortstr("PLAIN")
                  + longstr(f"\0{user}\0{password}".encode()) + shortstr("en_US"))
        tune = self.expect(10, 30)
        channel_max, frame_max = struct.unpack(">HI", tune[:6])
        self.send(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))
        self.send(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")
        self.expect(10, 41)
        self.send(1, 20, 10, shortstr(""))
        self.expect(20, 11)

    def send(self, channel, class_id, method_id, arguments):
        payload = struct.pack(">HH", class_id, method_id) + arguments
        self.sock.sendall(struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce")

    def read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise Failure("the broker closed the connection")
            data += chunk
        return data

    def expect(self, class_id, method_id):
        while True:
            kind, _, size = struct.unpack(">BHI", self.read(7))
            payload = self.read(size + 1)[:-1]
            if kind == 1:
                break
        got = struct.unpack(">HH", payload[:4])
        if got in ((10, 50), (20, 40)):  # connection.close, channel.close
            code, length = struct.unpack(">HB", payload[4:7])
            raise Failure(f"broker: {code} {payload[7:7 + length].decode(errors='replace')}")
        if got != (class_id, method_id):
            raise Failure(f"broker: expected method {class_id}.{method_id}, got {got}")
        return payload[4:]

    def delete_queue(self, name):
        self.send(1, 50, 40, struct.pack(">H", 0) + shortstr(name) + b"\x00")
        self.expect(50, 41)

    def delete_exchange(self, name):
        self.send(1, 40, 20, struct.pack(">H", 0) + shortstr(name) + b"\x00")
        self.expect(40, 21)

    def close(self):
        self.send(0, 10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))
        self.expect(10, 51)
        self.sock.close()


def shortstr(text):
    data = text.encode()
    return struct.pack(">B", len(data)) + data


def longstr(data):
    return struct.pack(">I", len(data)) + data


def cmd_delete_broker_objects(args):
    def ours(name):
        return any(name.startswith(p) for p in args.prefixes)

    queues = sorted(q for q in args.queues if ours(q))
    exchanges = sorted(x for x in args.exchanges if ours(x))
    if queues or exchanges:
        broker = Amqp(args.amqp)
        for queue in queues:
            broker.delete_queue(queue)
        for exchange in exchanges:
            broker.delete_exchange(exchange)
        broker.close()
    log(f"deleted {len(queues)} queues and {len(exchanges)} exchanges named {' '.join(args.prefixes)}*")


# ---------------------------------------------------------------------------------------
# checks

def load_dashboards():
    boards = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        panels = []
        for panel in board["panels"]:
            panels.extend(panel.get("panels", []) if panel.get("type") == "row" else [panel])
        boards.append((path.name, board["title"], variables, panels))
    return boards


def substitute(expr, variables, run_range):
    builtins = {"__rate_interval": "1m", "__interval": "15s", "__range": run_range,
                "__range_s": run_range.rstrip("s")}

    def value(match):
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        variable = variables.get(name)
        if variable is None:
            raise Failure(f"unknown variable ${name}")
        return variable.get("allValue") or ".*"

    return VARIABLE.sub(value, expr)


class Checker:
    def __init__(self, prometheus, run_range):
        self.prometheus = prometheus
        self.run_range = run_range
        self.names = None
        self.seen = {}
        self.excused = {}

    def scraped_names(self):
        if self.names is None:
            url = f"{self.prometheus}/api/v1/label/__name__/values"
            self.names = set(request("GET", url)[2]["data"])
        return self.names

    def selector_matches(self, selector):
        if selector not in self.seen:
            result = prometheus_query(
                self.prometheus, f"group(last_over_time({selector}[{self.run_range}]))")
            self.seen[selector] = bool(result)
        return self.seen[selector]

    def panel(self, expr, legend):
        """Problems of one panel target (an empty list when it is fine)."""
        try:
            result = prometheus_query(self.prometheus, expr)
        except Failure as failure:
            return [f"query error: {failure}"]
        problems = []
        if not result:
            problems.append("no series")
        labelled = [series["metric"] for series in result if series["metric"]]
        wanted = set(LEGEND_LABEL.findall(legend or ""))
        if wanted and result:
            missing = sorted(w for w in wanted
                             if not labelled or any(w not in metric for metric in labelled))
            if missing:
                problems.append(f"legend label(s) {', '.join(missing)} missing on the series")
        for name, matchers in SELECTOR.findall(expr):
            selector = name + matchers
            if self.selector_matches(selector):
                continue
            reason = next((why for metric, fragment, why in LEGITIMATELY_ABSENT
                           if name == metric and fragment in matchers), None)
            if reason:
                self.excused[selector] = reason
                continue
            if name not in self.scraped_names():
                problems.append(f"metric {name} was never scraped")
            else:
                problems.append(f"selector {selector} matched nothing during the run")
        return sorted(set(problems))

    def alert(self, expr, health, error):
        problems = []
        try:
            prometheus_query(self.prometheus, expr)
        except Failure as failure:
            problems.append(f"query error: {failure}")
        if health != "ok":
            problems.append(f"rule health {health} {error}".strip())
        for metric, _ in SELECTOR.findall(expr):
            if metric not in self.scraped_names():
                problems.append(f"metric {metric} was never scraped")
        return sorted(set(problems))


def loaded_rules(prometheus):
    """{name: (query, health, last error)} of every alerting rule Prometheus loaded."""
    groups = request("GET", f"{prometheus}/api/v1/rules?type=alert")[2]["data"]["groups"]
    return {rule["name"]: (rule["query"], rule.get("health"), rule.get("lastError", ""))
            for group in groups for rule in group["rules"]}


def cmd_check(args):
    boards = load_dashboards()
    expected = set(re.findall(r"^\s*- alert:\s*(\S+)", (DASHBOARDS / "alerts.yaml").read_text(), re.M))
    rules = loaded_rules(args.prometheus)
    if set(rules) != expected:
        log(f"FAIL Prometheus loaded alerts {sorted(rules)}, dashboards/alerts.yaml has {sorted(expected)}")
        return 1
    run_range = f"{args.range}s"
    targets = []
    for _, title, variables, panels in boards:
        for panel in panels:
            for target in panel.get("targets", []):
                where = f'{title} › "{panel["title"]}" [{target.get("refId", "?")}]'
                try:
                    expr = substitute(target["expr"], variables, run_range)
                except Failure as failure:
                    targets.append((where, None, None, str(failure)))
                    continue
                targets.append((where, expr, target.get("legendFormat", ""), None))
    panel_count = sum(len(p) for *_, p in boards)
    log(f"checking {len(boards)} dashboards, {panel_count} panels, {len(targets)} queries and "
        f"{len(rules)} alerting rules against {args.prometheus}")
    deadline = time.time() + args.wait
    while True:
        checker = Checker(args.prometheus, run_range)
        rules = loaded_rules(args.prometheus)
        failures = {}
        for where, expr, legend, error in targets:
            problems = [error] if error else checker.panel(expr, legend)
            if problems:
                failures[where] = problems
        for name, (expr, health, error) in sorted(rules.items()):
            problems = checker.alert(expr, health, error)
            if problems:
                failures[f"alert {name}"] = problems
        if not failures or time.time() >= deadline:
            break
        time.sleep(3)
    for selector, reason in sorted(checker.excused.items()):
        log(f"no data expected: {selector} ({reason})")
    for where, problems in failures.items():
        for problem in problems:
            log(f"FAIL {where}: {problem}")
    ok_targets = len(targets) - sum(1 for w in failures if not w.startswith("alert "))
    ok_rules = len(rules) - sum(1 for w in failures if w.startswith("alert "))
    print(f"dashboards: {ok_targets} passed, {len(targets) - ok_targets} failed")
    print(f"alerts: {ok_rules} passed, {len(rules) - ok_rules} failed")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ports = sub.add_parser("ports")
    ports.add_argument("n", type=int)
    for name in ("drive", "check"):
        p = sub.add_parser(name)
        p.add_argument("--prometheus", required=True, help="e.g. http://127.0.0.1:9090")
        p.add_argument("--wait", type=float, default=45, help="seconds to let data arrive")
        p.add_argument("--range", type=int, default=600,
                       help="seconds of history that $__range and the selector checks cover")
        if name == "drive":
            p.add_argument("--api", required=True, help="base URL of `storeops all`")
            p.add_argument("--second-api", required=True, help="base URL of the api without replicas")
            p.add_argument("--bin", required=True, help="the storeops binary (for tokens)")
            p.add_argument("--receiver-port", type=int, required=True)
    broker = sub.add_parser("delete-broker-objects")
    broker.add_argument("--amqp", required=True, help="AMQP URL")
    broker.add_argument("--prefixes", nargs="+", required=True)
    broker.add_argument("--queues", nargs="*", default=[])
    broker.add_argument("--exchanges", nargs="*", default=[])
    args = parser.parse_args()
    commands = {"ports": cmd_ports, "drive": cmd_drive, "check": cmd_check,
                "delete-broker-objects": cmd_delete_broker_objects}
    try:
        return commands[args.command](args)
    except Failure as failure:
        log(f"FAIL {failure}")
        return 1


if __name__ == "__main__":
    sys.exit(main() or 0)
