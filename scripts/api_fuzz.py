#!/usr/bin/env python3
"""Schemathesis over every operation of storeops' /openapi.json, once per role.

Run through scripts/test-api-fuzz (which brings the services' environment and the
project's virtualenv). What one run does:

  1. a fresh database (storeops_fuzz_<pid>), `storeops migrate up`, `storeops seed
     --stores 20 --days 1`;
  2. `storeops all` on free loopback ports, with its own AMQP_TOPOLOGY_PREFIX; the
     webhook sender (consumer group `webhook-deliveries`) is left out so that webhooks the
     fuzzer registers are never called (their URLs can name any host);
  3. a token per role (`storeops token`): hq, regional_manager of a seeded region,
     store_manager and associate of a seeded store (their `sub` a real staff id of it),
     integration;
  4. per role, fresh fixtures made through the API (a review template, tasks in each
     status, tasks with a photo item and one with a photo attached, a campaign, two
     announcements, a webhook, a closure day, three ingests, tokens of the changes feed)
     whose ids feed the path parameters and the body fields that must name existing
     things, as Schemathesis dictionaries;
  5. `schemathesis run` with every check, a fixed seed and the mode's bounds, and the
     hooks of scripts/api_fuzz_hooks.py;
  6. after the last role: the hand-made attacks of scripts/api_attacks.py; then every
     ingest must have finished (no message lost), the server must not have panicked
     or logged an internal error, and a run of every role must have reached each of
     REQUIRED_ANSWERS (the feed, 304s, transition conflicts, photo grants);
  7. a summary (cases, failures by check and operation), reports under --report-dir,
     and the exit code: 0 only when nothing failed.

With --lanes N (default 2), the roles are dealt to N runs of this script at once, each
doing 1-6 for its roles with its own database, server and prefix (the attacks in the last
lane); the answers every run must reach are checked over all of them, and one summary is
printed.

Processes, the database and the broker queues it made are removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import api_attacks
import local_storeops
from local_storeops import Failed, Server, psql, with_database

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("hq", "regional_manager", "store_manager", "associate", "integration")
# What a role's run costs, relative (seconds of a CI-mode run on 2 cores, 2026-12-07), and
# the hand-made attacks: how the roles are dealt to lanes so that the lanes end together.
COST = {"hq": 129, "regional_manager": 126, "store_manager": 109, "associate": 106, "integration": 66,
        "attacks": 20}
# The webhook sender is the one consumer group that talks to the outside world.
QUEUES = "campaigns,announcements,ingest,schedules,webhooks"
JWT_SECRET = "storeops-api-fuzz-secret-0123456789abcdef"

# What each mode spends. `max_examples` bounds every operation of every phase; `max_time`
# (seconds per role) makes Schemathesis repeat fuzzing and stateful cycles until spent.
MODES: dict[str, dict[str, Any]] = {
    # CI: deterministic in what it generates (no time budget), a few minutes on 2 cores.
    "ci": {"max_examples": 25, "max_time": None, "timeout_per_role": 420, "continue_on_failure": False},
    # Long: at least 50,000 cases over all roles (fewer is a failure), every failure of an
    # operation rather than its first.
    "long": {"max_examples": 250, "max_time": None, "timeout_per_role": 2400, "continue_on_failure": True,
             "min_cases": 50_000},
}


def log(message: str) -> None:
    print(f"api-fuzz: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- plumbing


class Api:
    """A tiny JSON client (stdlib only) for making fixtures."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, token: str, body: Any = None, headers: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status = response.status
                resp_headers = dict(response.headers)
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
            resp_headers = dict(e.headers)
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, resp_headers, payload

    def ok(self, method: str, path: str, token: str, body: Any = None, expect=(200, 201, 202, 204), **kw):
        status, headers, payload = self.call(method, path, token, body, **kw)
        if status not in expect:
            raise Failed(f"fixture {method} {path} answered {status}: {str(payload)[:300]}")
        return payload


# ---------------------------------------------------------------------------- fixtures


def token(binary: Path, role: str, sub: str, store: str | None = None, region: str | None = None) -> str:
    return local_storeops.token(binary, JWT_SECRET, role, sub, store=store, region=region)


class Chain:
    """What the seed made, read once through the API with an HQ token."""

    def __init__(self, api: Api, hq: str):
        self.regions = [r["code"] for r in api.ok("GET", "/api/v1/regions", hq)["items"]]
        self.stores = api.ok("GET", "/api/v1/stores?limit=200", hq)["items"]
        by_region = collections.defaultdict(list)
        for s in self.stores:
            by_region[s["region"]].append(s)
        # The home store: in a region with more than one store (the regional manager sees
        # several); the foreign store: in another region.
        region = max(sorted(by_region), key=lambda r: len(by_region[r]))
        self.region = region
        self.region_stores = by_region[region]
        self.home = self.region_stores[0]
        self.foreign = next(s for s in self.stores if s["region"] != region)
        staff = api.ok("GET", f"/api/v1/stores/{self.home['id']}/staff?limit=200", hq)["items"]
        self.associates = [s["id"] for s in staff if s["role"] == "associate" and s["active"]]
        self.managers = [s["id"] for s in staff if s["role"] == "store_manager" and s["active"]]
        if not self.associates or not self.managers:
            raise Failed("the seeded home store has no active associate or manager")
        self.templates = [t["id"] for t in api.ok("GET", "/api/v1/task-templates?limit=200", hq)["items"]]


def make_fixtures(api: Api, chain: Chain, tokens: dict[str, str], role: str, n: int) -> dict[str, list]:
    """Fresh objects for one role's run; returns the dictionaries' values."""
    hq, integration = tokens["hq"], tokens["integration"]
    home, foreign = chain.home, chain.foreign
    tag = f"{role}-{n}"
    template = api.ok(
        "POST",
        "/api/v1/task-templates",
        hq,
        {
            "title": f"Fuzz review checklist {tag}",
            "kind": "checklist",
            "review_required": True,
            "estimated_minutes": 10,
            "checklist": [
                {"key": "shelves_clean", "label": "Shelves clean", "type": "check", "required": True},
                {"key": "fridge_temp", "label": "Fridge temperature", "type": "number"},
                {"key": "notes", "label": "Notes", "type": "text"},
            ],
        },
    )
    tasks: list[str] = []

    def task(store_id: str, **body) -> dict:
        body.setdefault("title", f"Fuzz task {tag} #{len(tasks)}")
        created = api.ok("POST", f"/api/v1/stores/{store_id}/tasks", hq, body)
        tasks.append(created["id"])
        return created

    def act(t: dict, action: str, body: Any = None) -> None:
        api.ok("POST", f"/api/v1/tasks/{t['id']}/{action}", hq, body if body is not None else {})

    assignee = chain.associates[0]
    for _ in range(3):
        task(home["id"], assignee_id=assignee, priority="high")  # open, mine for the associate
        task(home["id"])  # open, unassigned
        act(task(home["id"], assignee_id=assignee), "start")  # in progress
        submitted = task(home["id"], template_id=template["id"], assignee_id=assignee)
        act(submitted, "complete", {"answers": {"shelves_clean": True, "fridge_temp": 4}})  # submitted
    act(task(home["id"]), "complete")  # done
    act(task(home["id"]), "cancel", {"reason": "fuzz fixture"})  # cancelled
    task(foreign["id"])  # outside every store-bound role's scope
    # Photo evidence: open tasks with a photo item (grants answer 201) and a done one with
    # an attached photo (its evidence list has one, with presigned URLs).
    photo_template = api.ok("POST", "/api/v1/task-templates", hq, {
        "title": f"Fuzz photo checklist {tag}", "kind": "checklist",
        "checklist": [{"key": PHOTO_ITEM, "label": "Shelf photo", "type": "photo", "required": True}],
    })["id"]
    for _ in range(2):
        task(home["id"], template_id=photo_template, assignee_id=assignee)
    photographed = task(home["id"], template_id=photo_template, assignee_id=assignee)
    act(photographed, "complete", {"answers": {PHOTO_ITEM: {"evidence_id": upload_photo(api, hq, photographed["id"])}}})
    campaign = api.ok(
        "POST",
        "/api/v1/campaigns",
        hq,
        {
            "title": f"Fuzz campaign {tag}",
            "target": {"store_codes": [s["code"] for s in chain.region_stores]},
            "due_local": (dt.date.today() + dt.timedelta(days=3)).isoformat() + "T18:00:00",
        },
    )
    # Announcements: one in force for the region's stores (acknowledgements required),
    # one a draft; the staff roles read and acknowledge the first.
    announcements = [
        api.ok(
            "POST",
            "/api/v1/announcements",
            hq,
            {
                "title": f"Fuzz announcement {tag}",
                "body": "Read and acknowledge.",
                "target": {"store_codes": [s["code"] for s in chain.region_stores]},
                "requires_ack": True,
            },
        )["id"],
        api.ok(
            "POST",
            "/api/v1/announcements",
            hq,
            {"title": f"Fuzz draft {tag}", "body": "Not yet.", "target": {"all": True}, "draft": True},
        )["id"],
    ]
    webhooks = [
        api.ok(
            "POST",
            "/api/v1/webhooks",
            hq,
            {"url": f"http://127.0.0.1:9/fuzz/{tag}/{i}", "event_types": ["task.completed"]},
        )["id"]
        for i in range(2)
    ]
    closure_dates = []
    for days in (30, 31):
        day = (dt.date.today() + dt.timedelta(days=days + n * 2)).isoformat()
        api.ok("POST", f"/api/v1/stores/{home['id']}/closures", hq, {"date": day, "reason": "fuzz"})
        closure_dates.append(day)
    ingests = [
        api.ok(
            "POST",
            "/api/v1/integrations/stock-alerts",
            integration,
            {"alert_id": f"FUZZ-A-{tag}", "store_code": home["code"], "sku": "4600001", "on_hand": 0},
        )["id"],
        api.ok(
            "POST",
            "/api/v1/integrations/deliveries",
            integration,
            {
                "delivery_id": f"FUZZ-D-{tag}",
                "store_code": home["code"],
                "supplier": "Fuzz Dairy",
                "expected_at": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat(),
                "lines": [{"sku": "4600002", "qty": 12}],
            },
        )["id"],
        api.ok(
            "POST",
            "/api/v1/integrations/price-changes",
            integration,
            {
                "batch_id": f"FUZZ-P-{tag}",
                "effective_at": (dt.date.today() + dt.timedelta(days=1)).isoformat() + "T06:00:00",
                "items": [
                    {"sku": "4600003", "name": "Milk 1 l", "new_price": 1.29, "currency": "EUR",
                     "store_codes": [home["code"]]},
                ],
            },
        )["id"],
    ]
    cursors = issued_cursors(api, hq, home["id"], tasks[2], campaign["id"], announcements[0])
    # The changes feed's tokens: one inside a first sync (its snapshot), one from the log.
    feed = f"/api/v1/stores/{home['id']}/changes"
    feed_tokens = [api.ok("GET", f"{feed}?limit=1", hq)["next_token"]]
    page = api.ok("GET", f"{feed}?limit=200", hq)
    while page["more"]:
        page = api.ok("GET", f"{feed}?limit=200&since={page['next_token']}", hq)
    feed_tokens.append(page["next_token"])
    if role == "regional_manager" or role == "hq":
        stores = [s["id"] for s in chain.region_stores] + [foreign["id"]]
        store_codes = [s["code"] for s in chain.region_stores]
    else:
        stores = [home["id"], foreign["id"]]
        store_codes = [home["code"]]
    regions = [chain.region] if role != "hq" else chain.regions
    return {
        "store_ids": stores,
        "task_ids": tasks,
        "template_ids": [template["id"]] + chain.templates,
        "campaign_ids": [campaign["id"]],
        "announcement_ids": announcements,
        "webhook_ids": webhooks,
        "ingest_ids": ingests,
        "closure_dates": closure_dates,
        "staff_ids": chain.associates[:5] + chain.managers[:2],
        "store_codes": store_codes,
        "region_codes": regions,
        "feed_tokens": feed_tokens,
        "item_keys": [PHOTO_ITEM],
        **cursors,
    }


PHOTO_ITEM = "shelf_photo"


def upload_photo(api: Api, token_value: str, task_id: str) -> str:
    """A photo for the task's photo item, as the app sends it: a grant, then a PUT of
    exactly the granted type and size to the object store. Returns the evidence id."""
    photo = local_storeops.png()
    grant = api.ok("POST", f"/api/v1/tasks/{task_id}/evidence", token_value,
                   {"item_key": PHOTO_ITEM, "content_type": "image/png", "size_bytes": len(photo)})
    status = local_storeops.put_upload(grant["upload"], photo)
    if status != 200:
        raise Failed(f"the object store answered {status} to a fixture's photo")
    return grant["evidence_id"]


# Each list's cursor encodes its own sort key: a cursor fits only the list that issued it.
LISTS = {
    "cursor_stores": ("/api/v1/stores", "/api/v1/stores"),
    "cursor_staff": ("/api/v1/stores/{store_id}/staff", "/api/v1/stores/{home}/staff"),
    "cursor_tasks": ("/api/v1/stores/{store_id}/tasks", "/api/v1/stores/{home}/tasks"),
    "cursor_templates": ("/api/v1/task-templates", "/api/v1/task-templates"),
    "cursor_webhooks": ("/api/v1/webhooks", "/api/v1/webhooks"),
    "cursor_history": ("/api/v1/tasks/{task_id}/history", "/api/v1/tasks/{task}/history"),
    "cursor_campaign_stores": ("/api/v1/campaigns/{campaign_id}/stores", "/api/v1/campaigns/{campaign}/stores"),
    "cursor_announcement_stores": (
        "/api/v1/announcements/{announcement_id}/stores",
        "/api/v1/announcements/{announcement}/stores",
    ),
}

# Lists filled by the workers after the fixture is made: waited for (bounded).
ASYNCHRONOUS = ("cursor_campaign_stores", "cursor_announcement_stores")


# The key of the feed's tokens in the cursors file the hooks read (not an operation path).
FEED_TOKENS_KEY = "since"


def issued_cursors(api: Api, hq: str, home: str, task: str, campaign: str, announcement: str) -> dict[str, list[str]]:
    """Real `next_cursor` values of every list (a schema cannot describe "a cursor we issued")."""
    found: dict[str, list[str]] = {}
    deadline = time.monotonic() + 30  # fan-outs are asynchronous
    for name, (_, path) in LISTS.items():
        url = path.format(home=home, task=task, campaign=campaign, announcement=announcement)
        while True:
            status, _, page = api.call("GET", f"{url}?limit=1", hq)
            cursor = page.get("next_cursor") if status == 200 and isinstance(page, dict) else None
            if cursor or time.monotonic() > deadline or name not in ASYNCHRONOUS:
                break
            time.sleep(1)
        if cursor:
            found[name] = [cursor, ""]
    return found


# ---------------------------------------------------------------------------- config

# Mixed into every free-text field and query parameter now and then: Schemathesis rarely
# builds these by itself. All are schema-valid strings wherever the schema says only
# "string" (positive cases), so a 5xx on them is a server error, not a bad request.
HOSTILE_TEXT = ["a\x00b", "\x00", "%00", "line\u2028break", "'; DROP TABLE tasks; --", "\u202eevil", "\\", "😀"]
HOSTILE_PROBABILITY = 0.05


def text_fields(openapi: dict) -> list[str]:
    """Binding keys (`body.a.b[*].c`) of every free-text string in the request bodies."""
    schemas = openapi.get("components", {}).get("schemas", {})
    found: set[str] = set()

    def walk(schema: Any, path: str, seen: tuple) -> None:
        if not isinstance(schema, dict):
            return
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                walk(schemas.get(name), path, seen + (name,))
            return
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, path, seen)
        types = schema.get("type")
        types = types if isinstance(types, list) else [types]
        if "string" in types and "enum" not in schema and "format" not in schema and path:
            found.add(path)
        if "array" in types:
            walk(schema.get("items"), path + "[*]", seen)
        for name, sub in (schema.get("properties") or {}).items():
            walk(sub, f"{path}.{name}" if path else name, seen)

    for item in openapi.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for media in ((operation.get("requestBody") or {}).get("content") or {}).values():
                walk(media.get("schema"), "", ())
    return sorted(f"body.{p}" for p in found)



def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, as long as no surrogate pair is escaped.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def write_config(path: Path, *, token_value: str, mode: dict, seed: int, workers: int, data: dict,
                 text_keys: list[str]) -> None:
    """One schemathesis.toml per role: auth, bounds, checks and the fixtures' dictionaries."""
    lines = [
        "# Written by scripts/api_fuzz.py for one role's run.",
        f"seed = {seed}",
        f"workers = {workers}",
        "request-timeout = 30",
        f"continue-on-failure = {toml_value(mode['continue_on_failure'])}",
        f"hooks = {toml_value(str(Path(__file__).resolve().parent / 'api_fuzz_hooks.py'))}",
        "suppress-health-check = [\"too_slow\", \"filter_too_much\", \"data_too_large\", \"large_base_example\"]",
    ]
    if mode["max_time"]:
        lines.append(f"max-time = {mode['max_time']}")
    lines += [
        "",
        # Reports show every header as sent (the tokens are this run's throwaways).
        "[output.sanitization]",
        "enabled = false",
        "",
        "[auth.openapi.bearer]",
        f"bearer = {toml_value(token_value)}",
        "",
        "[generation]",
        'mode = "all"',
        f"max-examples = {mode['max_examples']}",
        # Nothing carried over between runs: the same seed makes the same cases.
        'database = "none"',
        "",
        "[checks]",
        "enabled = true",
        # A well-formed If-Match naming a version the task has moved past is a state
        # conflict (like 409), not a rejection of the request's shape.
        'positive_data_acceptance = { expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"] }',
        # A 412 refuses the request before its content is read (RFC 9110 §13.2.1).
        'negative_data_rejection = { expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "415", "422", "428", "429", "5xx"] }',
        # RFC 6585: a missing precondition header is 428 Precondition Required.
        'missing_required_header = { expected-statuses = ["400", "401", "403", "406", "415", "422", "428"] }',
        "",
    ]
    lines += [
        "[generation.dictionaries]",
        f'string = {{ dictionary = "hostile", probability = {HOSTILE_PROBABILITY} }}',
        "",
        "[dictionaries.hostile]",
        f"values = {toml_value(HOSTILE_TEXT)}",
        "",
    ]
    for name, values in data.items():
        if values:
            lines += [f"[dictionaries.{name}]", f"values = {toml_value(list(values))}", ""]
    # Path parameters: mostly real ids (some random ones still exercise 404s). Body and
    # query fields that must name an existing thing: real values whenever generated (a
    # schema cannot say "exists"; what it can say is left to the generator).
    bindings = {
        "path.store_id": ("store_ids", 0.9),
        "path.task_id": ("task_ids", 0.9),
        "path.template_id": ("template_ids", 0.9),
        "path.campaign_id": ("campaign_ids", 0.9),
        "path.announcement_id": ("announcement_ids", 0.9),
        "body.supersedes": ("announcement_ids", 0.5),
        "path.webhook_id": ("webhook_ids", 0.9),
        "path.ingest_id": ("ingest_ids", 0.9),
        "path.date": ("closure_dates", 0.9),
        "query.assignee": ("staff_ids", 0.5),
        "query.region": ("region_codes", 0.9),
        "query.since": ("feed_tokens", 1.0),
        "body.item_key": ("item_keys", 0.9),
        "body.assignee_id": ("staff_ids", 1.0),
        "body.template_id": ("template_ids", 1.0),
        "body.store_code": ("store_codes", 1.0),
        "body.target.store_codes[*]": ("store_codes", 1.0),
        "body.target.regions[*]": ("region_codes", 1.0),
        "body.recurrence.target.store_codes[*]": ("store_codes", 1.0),
        "body.recurrence.target.regions[*]": ("region_codes", 1.0),
        "body.items[*].store_codes[*]": ("store_codes", 1.0),
        "body.items[*].regions[*]": ("region_codes", 1.0),
    }
    lines.append("[parameters]")
    for key, (dictionary, probability) in bindings.items():
        if data.get(dictionary):
            lines.append(f"{json.dumps(key)} = {{ dictionary = {json.dumps(dictionary)}, probability = {probability} }}")
    for key in text_keys:
        if key not in bindings:
            lines.append(f"{json.dumps(key)} = {{ dictionary = \"hostile\", probability = {HOSTILE_PROBABILITY} }}")
    lines.append("")
    for name, (operation_path, _) in LISTS.items():
        if data.get(name):
            lines += [
                "[[operations]]",
                f"include-path = {json.dumps(operation_path)}",
                'include-method = "GET"',
                f'parameters = {{ "query.cursor" = {{ dictionary = {json.dumps(name)}, probability = 1.0 }} }}',
                "",
            ]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------------------- results


def b64text(blob: Any, limit: int = 600) -> str:
    if not blob:
        return ""
    if isinstance(blob, dict) and "$base64" in blob:
        raw = base64.b64decode(blob["$base64"])
    elif isinstance(blob, dict) and "string" in blob:
        raw = blob["string"].encode()
    else:
        raw = json.dumps(blob).encode()
    text = raw.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= limit else text[:limit] + "…"


def curl_line(request: dict) -> str:
    parts = ["curl", "-X", request.get("method", "GET")]
    for name, values in (request.get("headers") or {}).items():
        if name.lower() in ("user-agent", "accept-encoding", "accept", "connection", "content-length"):
            continue
        for value in values if isinstance(values, list) else [values]:
            if name.lower() == "authorization":
                value = "Bearer $TOKEN"
            parts += ["-H", shell_quote(f"{name}: {value}")]
    body = request.get("body")
    if body:
        parts += ["--data-binary", shell_quote(b64text(body, 4000))]
    parts.append(shell_quote(request.get("uri", "")))
    return " ".join(parts)


def shell_quote(s: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:=?&%+-]+", s):
        return s
    return "$'" + s.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"


def collect(ndjson: Path, role: str) -> list[dict]:
    """Every failed check of the run, with the request and answer that showed it."""
    found = []
    with open(ndjson, encoding="utf-8") as f:
        for line in f:
            if '"status":"failure"' not in line and '"status": "failure"' not in line:
                continue
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished.get("recorder") or {}
            for case_id, checks in (recorder.get("checks") or {}).items():
                for check in checks:
                    if check.get("status") != "failure":
                        continue
                    info = (check.get("failure_info") or {}).get("failure") or {}
                    interaction = (recorder.get("interactions") or {}).get(case_id) or {}
                    request = interaction.get("request") or {}
                    response = interaction.get("response") or {}
                    found.append(
                        {
                            "role": role,
                            "phase": finished.get("phase"),
                            "operation": info.get("operation") or recorder.get("label"),
                            "check": check.get("name"),
                            "code": info.get("code"),
                            "title": info.get("title"),
                            "message": info.get("message"),
                            "status": response.get("status_code"),
                            "response": b64text(response.get("content")),
                            "curl": curl_line(request) if request else "",
                        }
                    )
    return found


# Answers a run with every role must reach (method, path, status, a query parameter it
# was sent with): the sync and photo paths of issue 28, which need real tokens, ETags and
# photo items from the fixtures and hooks. A run that stops reaching one has stopped
# testing it, and fails.
REQUIRED_ANSWERS = [
    ("GET", "/api/v1/stores/{store_id}/changes", 200, None),
    ("GET", "/api/v1/stores/{store_id}/changes", 200, "since"),
    ("GET", "/api/v1/stores/{store_id}/tasks", 304, None),
    ("GET", "/api/v1/tasks/{task_id}", 304, None),
    ("POST", "/api/v1/tasks/{task_id}/start", 409, None),
    ("POST", "/api/v1/tasks/{task_id}/complete", 409, None),
    ("POST", "/api/v1/tasks/{task_id}/evidence", 201, None),
    ("GET", "/api/v1/tasks/{task_id}/evidence", 200, None),
]


def path_templates(document: dict) -> list[tuple[re.Pattern, str]]:
    """Each path of the document as a regular expression matching its URLs."""
    found = []
    for template in document.get("paths", {}):
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        found.append((re.compile(f"^{pattern}$"), template))
    return found


def answers(ndjson: Path, templates: list[tuple[re.Pattern, str]]) -> set[tuple[str, str, int, frozenset[str]]]:
    """(method, path template, status, query parameter names) of every answer in the run."""
    found = set()
    with open(ndjson, encoding="utf-8") as f:
        for line in f:
            finished = json.loads(line).get("ScenarioFinished")
            if not finished:
                continue
            for interaction in ((finished.get("recorder") or {}).get("interactions") or {}).values():
                request, response = interaction.get("request") or {}, interaction.get("response") or {}
                url = urllib.parse.urlsplit(request.get("uri", ""))
                template = next((t for pattern, t in templates if pattern.match(url.path)), None)
                if template and response.get("status_code"):
                    names = frozenset(urllib.parse.parse_qs(url.query, keep_blank_values=True))
                    found.add((request.get("method", "").upper(), template, response["status_code"], names))
    return found


def unreached_answers(reached: set[tuple[str, str, int, frozenset[str]]]) -> list[str]:
    return [
        f"{method} {path} → {status}" + (f" with `{param}`" if param else "")
        for method, path, status, param in REQUIRED_ANSWERS
        if not any(m == method and p == path and s == status and (param is None or param in names)
                   for m, p, s, names in reached)
    ]


def server_log_errors(log_path: Path) -> list[str]:
    """Distinct internal errors and panics the server logged (JSON lines)."""
    seen: dict[str, int] = collections.Counter()
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            if "panicked" in line:
                seen[line[:300]] += 1
            continue
        if record.get("level") != "ERROR":
            continue
        fields = record.get("fields") or record
        message = fields.get("message", "")
        cause = str(fields.get("error") or fields.get("panic") or "")
        cause = " ".join(cause.split("Stack backtrace:")[0].split())
        span = record.get("span") or {}
        route = span.get("route") or record.get("route") or ""
        method = span.get("method") or record.get("method") or ""
        if message == "response failed":
            continue  # tower-http's line for the same 500 as "request failed"
        key = f"{message}: {cause}"[:300] + (f" [{method} {route}]" if route else "")
        seen[key] += 1
    return [f"{n}× {k}" for k, n in sorted(seen.items(), key=lambda kv: -kv[1])]


def lost_ingests(db_url: str, wait_s: int = 60) -> list[str]:
    """Ingests not finished after a bounded wait: an accepted request whose work got lost."""
    deadline = time.monotonic() + wait_s
    rows: list[str] = []
    while True:
        out = psql(
            db_url,
            "SELECT id || ' ' || source || ' ' || external_id || ' ' || status FROM ingests "
            "WHERE status NOT IN ('done', 'failed') ORDER BY received_at",
        )
        rows = [r for r in out.splitlines() if r.strip()]
        if not rows or time.monotonic() > deadline:
            return rows
        time.sleep(2)


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default=os.environ.get("API_FUZZ_MODE", "ci"))
    parser.add_argument("--bin", default=os.environ.get("STOREOPS_BIN", str(ROOT / "target/debug/storeops")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("API_FUZZ_SEED", "20261202")))
    parser.add_argument("--roles", default=os.environ.get("API_FUZZ_ROLES", ",".join(ROLES)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("API_FUZZ_WORKERS", "2")))
    parser.add_argument("--lanes", type=int, default=int(os.environ.get("API_FUZZ_LANES", "2")),
                        help="run the roles in this many lanes at once, each with its own server and database")
    parser.add_argument("--lane-result", help=argparse.SUPPRESS)  # a lane's results, for the run that started it
    parser.add_argument("--max-examples", type=int, help="override the mode's per-operation bound")
    parser.add_argument("--max-time", type=int, help="override the mode's seconds per role")
    parser.add_argument("--continue-on-failure", action="store_true",
                        help="keep testing an operation after its first failure (finds more distinct ones)")
    parser.add_argument("--no-attacks", action="store_true", help="skip the hand-made attacks (scripts/api_attacks.py)")
    parser.add_argument("--report-dir", default=os.environ.get("API_FUZZ_REPORT_DIR"))
    parser.add_argument("--keep", action="store_true", help="keep the database and the full NDJSON reports")
    args = parser.parse_args()

    mode = dict(MODES[args.mode])
    if args.max_examples:
        mode["max_examples"] = args.max_examples
    if args.max_time:
        mode["max_time"] = args.max_time
        mode["timeout_per_role"] = max(mode["timeout_per_role"], args.max_time + 300)
    if args.continue_on_failure:
        mode["continue_on_failure"] = True
    roles = [r for r in args.roles.split(",") if r]
    unknown = set(roles) - set(ROLES)
    if unknown:
        parser.error(f"unknown roles: {', '.join(sorted(unknown))}")
    for var in ("DATABASE_URL", "AMQP_URL"):
        if not os.environ.get(var):
            parser.error(f"{var} is not set (run through scripts/test-api-fuzz)")
    if args.lanes < 1:
        parser.error("--lanes must be at least 1")

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report_dir = Path(args.report_dir or ROOT / "target" / "api-fuzz" / f"{args.mode}-{stamp}")
    report_dir.mkdir(parents=True, exist_ok=True)
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM (make test's end, a CI cancel) unwinds like ^C: lanes stop, servers stop,
    # databases and queues are removed.
    signal.signal(signal.SIGTERM, on_signal)
    if args.lanes > 1 and len(roles) > 1:
        return run_lanes(args, roles, report_dir)
    work = Path(tempfile.mkdtemp(prefix="storeops-api-fuzz-"))
    # A private copy: the binary may be rebuilt while this runs.
    binary = work / "storeops"
    shutil.copy2(args.bin, binary)

    pid = os.getpid()
    db_name = f"storeops_fuzz_{pid}"
    db_url = with_database(os.environ["DATABASE_URL"], db_name)
    prefix = f"storeops-fuzz-{pid}"
    local_storeops.drop_stale_databases("storeops_fuzz_", log)
    server: Server | None = None
    started = time.monotonic()
    failures: list[dict] = []
    per_role: list[tuple[str, dict]] = []
    problems: list[str] = []
    reached: set[tuple[str, str, int, frozenset[str]]] = set()
    try:
        log(f"mode {args.mode}: max-examples {mode['max_examples']} per operation"
            + (f", {mode['max_time']} s per role" if mode["max_time"] else "") + f", seed {args.seed}")
        env = local_storeops.run_env(
            db_name, secret=JWT_SECRET, topology_prefix=prefix,
            RUST_LOG=os.environ.get("API_FUZZ_RUST_LOG", "warn"),
            # Webhooks the fuzzer creates may name any host; none is ever called (the
            # sender does not run), and with private targets allowed creation does no DNS.
            WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
            # Belt and braces: any HTTP client that honours proxies goes nowhere, but for
            # the object store's host (photo fixtures are checked there on completion).
            HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", ALL_PROXY="http://127.0.0.1:9",
            NO_PROXY=urllib.parse.urlsplit(os.environ.get("S3_ENDPOINT", "")).hostname or "",
            SCHEDULER_TICK_SECONDS="5",
        )
        local_storeops.create_seeded_database(binary, env, db_name, stores=20, days=1)
        log(f"database {db_name} migrated and seeded (20 stores, 1 day)")
        server = Server(binary, env, report_dir / "server.log", ["--queues", QUEUES, "--concurrency", "4"])
        server.start()
        log(f"storeops all on {server.base} (admin :{server.admin_port}), topology prefix {prefix}")
        api = Api(server.base)
        hq = token(binary, "hq", "fuzz-hq@example.com")
        chain = Chain(api, hq)
        document = json.loads(urllib.request.urlopen(f"{server.base}/openapi.json", timeout=30).read())
        text_keys = text_fields(document)
        templates = path_templates(document)
        tokens = {
            "hq": hq,
            "regional_manager": token(binary, "regional_manager", "fuzz-rm@example.com", region=chain.region),
            "store_manager": token(binary, "store_manager", chain.managers[0], store=chain.home["id"]),
            "associate": token(binary, "associate", chain.associates[0], store=chain.home["id"]),
            "integration": token(binary, "integration", "fuzz-erp"),
        }
        for role in roles:
            n = ROLES.index(role)
            if not server.alive():
                raise Failed(f"storeops all died (exit {server.proc.returncode}); see {server.log_path}")
            data = make_fixtures(api, chain, tokens, role, n)
            role_dir = report_dir / role
            role_dir.mkdir(exist_ok=True)
            config = role_dir / "schemathesis.toml"
            write_config(config, token_value=tokens[role], mode=mode, seed=args.seed, workers=args.workers, data=data,
                         text_keys=text_keys)
            cursors = role_dir / "cursors.json"
            issued = {path: data.get(name, []) for name, (path, _) in LISTS.items()}
            issued[FEED_TOKENS_KEY] = data.get("feed_tokens", [])
            cursors.write_text(json.dumps(issued))
            summary, found = run_schemathesis(server, config, role_dir, mode, role, cursors)
            for ndjson in role_dir.glob("ndjson-*.ndjson"):
                reached |= answers(ndjson, templates)
            per_role.append((role, summary))
            failures += found
            log(f"{role}: {summary.get('generated', 0)} cases in {summary.get('seconds', 0):.0f} s, "
                f"{len(found)} failed checks, exit {summary.get('exit_code')}")
            if summary.get("errors"):
                problems += [f"{role}: schemathesis error: {e}" for e in summary["errors"]]
            if not args.keep:
                for f in role_dir.glob("*.ndjson"):
                    f.unlink()
        if not args.no_attacks:
            attack_results = run_attacks(api, chain, tokens, pid)
            bad = [r for r in attack_results if r.failed]
            log(f"hand-made attacks: {len(attack_results)} sent, {len(bad)} failed")
            (report_dir / "attacks.txt").write_text(
                "".join(f"{'FAIL' if r.failed else 'ok  '} {r.attack.name}: {r.status} {r.verdict}\n"
                        f"     {api_attacks.curl(r.attack)}\n     → {r.body[:300]}\n" for r in attack_results))
            for r in bad:
                failures.append({
                    "role": r.attack.role, "phase": "attacks",
                    "operation": f"{r.attack.method} {api_attacks.template_of(r.attack.path)}",
                    "check": "hand-made attack", "code": None, "title": r.attack.name, "message": r.verdict,
                    "status": r.status, "response": r.body, "curl": api_attacks.curl(r.attack),
                })
        problems += whole_run_problems(args.mode, roles, per_role, reached)
        lost = lost_ingests(db_url)
        problems += [f"ingest accepted (202) but never finished: {row}" for row in lost]
        if not server.alive():
            problems.append(f"storeops all exited during the run ({server.proc.returncode})")
    except Failed as e:
        problems.append(str(e))
    except KeyboardInterrupt as e:
        problems.append(f"interrupted ({e})")
    finally:
        # Errors the server logged while serving (read before SIGTERM: shutdown has its own).
        logged = server_log_errors(report_dir / "server.log") if server else []
        if server is not None:
            server.stop()
        if args.keep:
            log(f"kept database {db_name}")
        else:
            local_storeops.drop_database(db_name, log)
        local_storeops.delete_queues(prefix, log)
        shutil.rmtree(work, ignore_errors=True)

    problems += [f"server logged: {line}" for line in logged]
    if args.lane_result:
        Path(args.lane_result).write_text(json.dumps({
            "per_role": per_role, "failures": failures, "problems": problems,
            "reached": [[m, p, s, sorted(names)] for m, p, s, names in reached],
        }, default=str))
    write_failures(report_dir, failures, problems, per_role)
    print_summary(args.mode, per_role, failures, problems, time.monotonic() - started, report_dir)
    return 1 if failures or problems else 0


def whole_run_problems(mode_name: str, roles: list[str], per_role, reached) -> list[str]:
    """What only a run of every role can tell: an answer no case reached, and (long mode)
    fewer cases than the mode promises."""
    if set(roles) != set(ROLES):
        return []
    problems = [f"no case reached {unreached}" for unreached in unreached_answers(reached)]
    cases = sum(summary.get("generated", 0) for _, summary in per_role)
    minimum = MODES[mode_name].get("min_cases")
    if minimum and cases < minimum:
        problems.append(f"{mode_name} mode ran {cases} cases, fewer than its {minimum}")
    return problems


def deal(roles: list[str], n: int, attacks: bool) -> list[list[str]]:
    """The roles in n lanes, none empty, so that the longest lane is as short as can be
    (at most 5 roles: every way is tried); the attacks count in the last lane."""
    best: tuple[int, list[list[str]]] | None = None
    for ways in itertools.product(range(n), repeat=len(roles)):
        lanes = [[r for r, k in zip(roles, ways) if k == lane] for lane in range(n)]
        if not all(lanes):
            continue
        longest = max(sum(COST[r] for r in lane) + (COST["attacks"] if attacks and k == n - 1 else 0)
                      for k, lane in enumerate(lanes))
        if best is None or longest < best[0]:
            best = (longest, lanes)
    assert best is not None
    return best[1]


def run_lanes(args, roles: list[str], report_dir: Path) -> int:
    """The roles dealt by their cost to lanes that run at once, each a run of this script
    with its own database, server and broker prefix (so no lane's cases touch another's
    fixtures), the hand-made attacks in the last lane (which `deal` counts them in); then the checks
    that need every role's answers, and one summary. One Schemathesis process is bound to
    about one core by Python, so two lanes use both cores of a 2-core machine."""
    lanes = deal(roles, min(args.lanes, len(roles)), attacks=not args.no_attacks)
    started = time.monotonic()
    children = []
    for k, lane_roles in enumerate(lanes):
        lane_dir = report_dir / f"lane-{k + 1}"
        lane_dir.mkdir(exist_ok=True)
        cmd = [sys.executable, __file__, "--mode", args.mode, "--bin", args.bin, "--seed", str(args.seed),
               "--roles", ",".join(lane_roles), "--workers", str(args.workers), "--lanes", "1",
               "--report-dir", str(lane_dir), "--lane-result", str(lane_dir / "lane.json")]
        if args.max_examples:
            cmd += ["--max-examples", str(args.max_examples)]
        if args.max_time:
            cmd += ["--max-time", str(args.max_time)]
        if args.continue_on_failure:
            cmd.append("--continue-on-failure")
        if args.keep:
            cmd.append("--keep")
        if args.no_attacks or k != len(lanes) - 1:
            cmd.append("--no-attacks")
        log(f"lane {k + 1}: {', '.join(lane_roles)} (log: {lane_dir / 'lane.log'})")
        out = open(lane_dir / "lane.log", "w")
        children.append((k, lane_dir, out, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)))

    per_role: list[tuple[str, dict]] = []
    failures: list[dict] = []
    problems: list[str] = []
    reached: set[tuple[str, str, int, frozenset[str]]] = set()
    try:
        for k, lane_dir, out, child in children:
            code = child.wait()
            out.close()
            log(f"lane {k + 1} finished (exit {code}):")
            sys.stderr.write("".join(f"   {line}" for line in (lane_dir / "lane.log").read_text(errors="replace")
                                     .splitlines(keepends=True)))
            try:
                result = json.loads((lane_dir / "lane.json").read_text())
            except (OSError, ValueError):
                problems.append(f"lane {k + 1} left no results (exit {code}); see {lane_dir / 'lane.log'}")
                continue
            per_role += [(role, summary) for role, summary in result["per_role"]]
            failures += result["failures"]
            problems += [f"lane {k + 1}: {p}" for p in result["problems"]]
            reached |= {(m, p, s, frozenset(names)) for m, p, s, names in result["reached"]}
    except KeyboardInterrupt:
        # Each lane stops its server and removes its database and queues; wait for that.
        for _, _, _, child in children:
            child.terminate()
        for _, _, _, child in children:
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
        raise
    per_role.sort(key=lambda item: ROLES.index(item[0]))
    problems += whole_run_problems(args.mode, roles, per_role, reached)
    write_failures(report_dir, failures, problems, per_role)
    print_summary(args.mode, per_role, failures, problems, time.monotonic() - started, report_dir)
    return 1 if failures or problems else 0


def run_schemathesis(server: Server, config: Path, role_dir: Path, mode: dict, role: str, cursors: Path):
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{server.base}/openapi.json",
        "--checks", "all",
        "--report", "junit,ndjson,json",
        "--report-dir", str(role_dir),
        "--output-truncate", "false",
    ]
    started = time.monotonic()
    with open(role_dir / "schemathesis.out", "w") as out:
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=mode["timeout_per_role"],
                                  cwd=role_dir, env=dict(os.environ, API_FUZZ_CURSORS=str(cursors)))
            exit_code = proc.returncode
        except subprocess.TimeoutExpired:
            exit_code = "timeout"
    seconds = time.monotonic() - started
    summary: dict[str, Any] = {"seconds": seconds, "exit_code": exit_code, "errors": []}
    reports = sorted(role_dir.glob("json-*.json"))
    if reports:
        report = json.loads(reports[-1].read_text())
        summary["generated"] = report["test_cases"]["generated"]
        summary["operations"] = report["operations"]
        summary["errors"] = [json.dumps(e)[:500] for e in report.get("errors") or []]
        summary["warnings"] = {k: v for k, v in (report.get("warnings") or {}).items() if v}
        summary["failures"] = report.get("failures")
        summary["filtered"] = report.get("filtered") or 0
    else:
        summary["errors"].append(f"no JSON report (exit {exit_code}); see {role_dir / 'schemathesis.out'}")
    if exit_code == "timeout":
        summary["errors"].append(f"schemathesis ran past {mode['timeout_per_role']} s and was stopped")
    found = []
    for ndjson in role_dir.glob("ndjson-*.ndjson"):
        found += collect(ndjson, role)
    if exit_code not in (0, 1, "timeout") and not found:
        summary["errors"].append(f"schemathesis exited {exit_code}; see {role_dir / 'schemathesis.out'}")
    return summary, found


def run_attacks(api: Api, chain: Chain, tokens: dict[str, str], run_id: int):
    hq = tokens["hq"]
    home = chain.home
    template = api.ok("POST", "/api/v1/task-templates", hq, {
        "title": "Attack review checklist", "review_required": True,
        "checklist": [
            {"key": "shelves_clean", "label": "Shelves clean", "type": "check", "required": True},
            {"key": "fridge_temp", "label": "Fridge temperature", "type": "number"},
            {"key": "notes", "label": "Notes", "type": "text"},
        ]})["id"]
    campaign = api.ok("POST", "/api/v1/campaigns", hq, {
        "title": "Attack campaign", "target": {"store_codes": [home["code"]]},
        "due_local": (dt.date.today() + dt.timedelta(days=3)).isoformat() + "T18:00:00"})["id"]

    def new_task(**body) -> str:
        body.setdefault("title", "Attack fixture")
        return api.ok("POST", f"/api/v1/stores/{home['id']}/tasks", hq, body)["id"]

    def submitted() -> str:
        task = new_task(template_id=template)
        api.ok("POST", f"/api/v1/tasks/{task}/complete", hq, {"answers": {"shelves_clean": True}})
        return task

    ctx = {
        "home_id": home["id"], "home_code": home["code"], "region": chain.region,
        "associate": chain.associates[0], "template": template, "run": run_id,
        "fresh": {
            "open_task": new_task, "cancel_task": new_task,
            "review_task": lambda: new_task(template_id=template), "submitted_task": submitted,
            "campaign": lambda: campaign,
        },
    }

    def ingest_done(ingest_id: str) -> str | None:
        status, _, body = api.call("GET", f"/api/v1/integrations/ingests/{ingest_id}", tokens["integration"])
        if status == 200 and isinstance(body, dict) and body.get("status") in ("done", "failed"):
            return body["status"]
        return None

    return api_attacks.run(api, tokens, ctx, ingest_done)


def write_failures(report_dir: Path, failures: list[dict], problems: list[str], per_role) -> None:
    (report_dir / "failures.json").write_text(
        json.dumps({"roles": dict(per_role), "failures": failures, "problems": problems}, indent=1, default=str)
    )


def print_summary(mode_name, per_role, failures, problems, seconds, report_dir) -> None:
    cases = sum(s.get("generated", 0) for _, s in per_role)
    print()
    print(f"== API fuzzing ({mode_name}): {cases} cases over {len(per_role)} roles in {seconds / 60:.1f} min")
    for role, s in per_role:
        ops = s.get("operations") or {}
        print(f"   {role:17} {s.get('generated', 0):7} cases  {ops.get('tested', '?')}/{ops.get('total', '?')} operations"
              f"  {s.get('seconds', 0):6.0f} s  ({s.get('filtered', 0)} refusals by state rules not counted)")
    groups = collections.defaultdict(list)
    for f in failures:
        groups[(f["check"], f["operation"])].append(f)
    if groups:
        print(f"-- {len(failures)} failed checks, {len(groups)} distinct (check, operation):")
        for (check, operation), items in sorted(groups.items()):
            roles = sorted({i["role"] for i in items})
            first = items[0]
            if check == "hand-made attack":
                names = sorted({f"{i['title']} → {i['status']}" for i in items})
                shown = "; ".join(names[:6]) + (f"; … ({len(names)} in all)" if len(names) > 6 else "")
                print(f"   {check:30} {operation:55} {shown}")
            else:
                print(f"   {check:30} {operation:55} [{', '.join(roles)}] → {first['status']}: {first['response'][:140]}")
    if problems:
        print(f"-- {len(problems)} other problems:")
        for p in problems:
            print(f"   {p}")
    print(f"-- reports: {report_dir} (failures.json has every request as a curl line)")
    passed = 0 if (failures or problems) else 1
    print(f"api-fuzz: {passed} passed, {1 - passed} failed")


if __name__ == "__main__":
    sys.exit(main())
