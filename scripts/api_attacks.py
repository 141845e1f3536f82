"""Hand-made hostile requests that a schema-driven generator rarely builds.

Used by scripts/api_fuzz.py after the Schemathesis runs (same server, same fixtures).
Each attack is one request with an expectation; an attack fails when the server answers
5xx, accepts what it must refuse, or accepts an integration request whose work then never
finishes (a lost message). The list:

- NUL (U+0000) in every text field of every JSON body, and in text query parameters;
- dates and instants outside PostgreSQL's range or absurdly far (years -262143, -4713, 0,
  10000, +262142) in every date field, body and query;
- numbers past every integer's range (2^31, 2^32, 2^63, 2^64, 1e400) and negative ones;
- Idempotency-Key with a space, a tab, surrounding blanks, 201 characters, non-ASCII;
- cursors that decode to junk: JSON null, an empty array, a NUL, the wrong key type,
  invalid UTF-8, not base64 at all;
- If-Match that is not a version; bodies that are `null`, an array, a string, nested
  2,000 deep, or gzip-labelled but not gzip; a missing Content-Type.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

NUL = "a\u0000b"


@dataclass
class Attack:
    name: str
    role: str
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None  # sent as is instead of `body`
    headers: dict[str, str] = field(default_factory=dict)
    # Statuses that pass; None = anything below 500.
    allowed: tuple[int, ...] | None = None
    # For 202s of the integration endpoints: the ingest must finish.
    ingest: bool = False


@dataclass
class Result:
    attack: Attack
    status: int
    body: str
    verdict: str  # "ok" or why it failed

    @property
    def failed(self) -> bool:
        return self.verdict != "ok"


def template_of(path: str) -> str:
    """`/api/v1/tasks/<uuid>/x?a=1` → `/api/v1/tasks/{id}/x?a=` (for grouping)."""
    base, _, query = path.partition("?")
    base = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "{id}", base)
    base = re.sub(r"/closures/[^/]+$", "/closures/{date}", base)
    names = [part.split("=", 1)[0] for part in query.split("&") if part]
    return base + ("?" + "&".join(f"{n}=" for n in names) if names else "")


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def string_leaves(value: Any, path: tuple = ()):  # -> Iterator[tuple]
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from string_leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from string_leaves(v, path + (i,))


def replaced(value: Any, path: tuple, new: Any) -> Any:
    out = copy.deepcopy(value)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return out


def dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


# Years past what PostgreSQL stores (4713 BC .. 294276 AD for timestamps), past chrono's
# (±262143), and merely absurd ones (0, 10000).
FAR_DATES = ["-262143-01-01", "-4714-01-01", "0000-01-01", "10000-01-01", "+262142-12-31"]
FAR_INSTANTS = [
    "-262143-01-01T00:00:00Z",
    "-4714-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "10000-01-01T00:00:00Z",
    "+262142-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",
]
FAR_LOCAL = ["-262143-01-01T06:00:00", "0000-01-01T06:00:00", "10000-01-01T06:00:00", "+262142-12-31T06:00:00"]
BIG_NUMBERS = [2**31, 2**32, 2**63, 2**64, -1, -(2**63) - 1]


def build(ctx: dict) -> list[Attack]:
    """ctx: home store (id, code), a task per status, template, campaign, staff ids, region."""
    home, code, region = ctx["home_id"], ctx["home_code"], ctx["region"]
    today = dt.date.today()
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=6)).replace(microsecond=0).isoformat()
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).replace(microsecond=0).isoformat()
    counter = iter(range(1, 1_000_000))

    def uid(prefix: str) -> str:
        return f"ATTACK-{prefix}-{ctx['run']}-{next(counter)}"

    # A valid body per write operation; factories so each attack gets fresh sender ids.
    writes: list[tuple[str, str, str, Callable[[], dict]]] = [
        ("hq", "POST", f"/api/v1/stores/{home}/tasks", lambda: {
            "title": "Attack task", "description": "described", "priority": "high",
            "assignee_id": ctx["associate"], "due_at": soon, "expires_at": later}),
        ("hq", "PATCH", "/api/v1/tasks/{open_task}", lambda: {"due_at": soon, "priority": "low"}),
        ("hq", "POST", "/api/v1/tasks/{submitted_task}/redo", lambda: {"reason": "do it again"}),
        ("hq", "POST", "/api/v1/tasks/{cancel_task}/cancel", lambda: {"reason": "not needed"}),
        ("hq", "POST", "/api/v1/tasks/{review_task}/complete", lambda: {
            "answers": {"shelves_clean": True, "fridge_temp": 4, "notes": "fine"},
            "evidence": [{"url": "https://photos.example.com/a.jpg", "content_type": "image/jpeg",
                          "size_bytes": 1000, "item_key": "shelves_clean", "taken_at": soon}],
            "note": "all done"}),
        ("hq", "POST", "/api/v1/tasks/{open_task}/comments", lambda: {"body": "a comment"}),
        ("hq", "POST", "/api/v1/task-templates", lambda: {
            "title": "Attack template", "description": "d", "kind": "checklist", "estimated_minutes": 5,
            "due_window_minutes": 60, "review_required": False,
            "checklist": [{"key": "k1", "label": "Label", "type": "text", "required": True}],
            "recurrence": {"frequency": "weekly", "at": "07:30", "weekdays": ["mon", "thu"],
                           "due_window_minutes": 120, "target": {"regions": [region]}}}),
        ("hq", "PATCH", f"/api/v1/task-templates/{ctx['template']}", lambda: {
            "title": "Attack template v2", "description": "d2", "estimated_minutes": 7}),
        ("hq", "POST", "/api/v1/campaigns", lambda: {
            "title": "Attack campaign", "description": "d", "target": {"store_codes": [code]},
            "due_local": f"{today + dt.timedelta(days=2)}T18:00:00"}),
        ("hq", "POST", "/api/v1/webhooks", lambda: {
            "url": "http://127.0.0.1:9/attack", "event_types": ["task.completed"],
            "secret": "0123456789abcdef0123", "description": "attack"}),
        ("hq", "POST", f"/api/v1/stores/{home}/closures", lambda: {
            "date": str(today + dt.timedelta(days=90)), "reason": "refit"}),
        ("integration", "POST", "/api/v1/integrations/price-changes", lambda: {
            "batch_id": uid("P"), "effective_at": f"{today + dt.timedelta(days=1)}T06:00:00",
            "items": [{"sku": "4601001", "name": "Bread", "new_price": 0.99, "currency": "EUR",
                       "store_codes": [code]}]}),
        ("integration", "POST", "/api/v1/integrations/deliveries", lambda: {
            "delivery_id": uid("D"), "store_code": code, "supplier": "Attack Foods", "expected_at": later,
            "lines": [{"sku": "4601002", "qty": 3}], "status": "expected"}),
        ("integration", "POST", "/api/v1/integrations/stock-alerts", lambda: {
            "alert_id": uid("A"), "store_code": code, "sku": "4601003", "on_hand": 1}),
    ]
    attacks: list[Attack] = []

    def add(name, role, method, path, body=None, **kw):
        ingest = path.startswith("/api/v1/integrations/") and method == "POST"
        attacks.append(Attack(name, role, method, path, body, ingest=ingest, **kw))

    headers_for = {"PATCH": {"If-Match": "*"}}
    # The untouched bodies first: they must pass, or the attacks below prove nothing.
    for role, method, path, make in writes:
        add(f"baseline {method} {path}", role, method, path, make(), headers=headers_for.get(method, {}),
            allowed=(200, 201, 202, 409))
    # NUL in each text field.
    for role, method, path, make in writes:
        for leaf in string_leaves(make()):
            is_url = leaf[-1] == "url"
            body = replaced(make(), leaf, "https://x.example.com/a\u0000b" if is_url else NUL)
            # A URL parser may percent-encode the NUL (%00): then accepting it is fine.
            add(f"NUL in {dotted(leaf)}", role, method, path, body, headers=headers_for.get(method, {}),
                allowed=(200, 201, 400, 409, 422) if is_url else (400, 409, 422))
    # NUL in text query parameters.
    for role, path, param in [
        ("hq", "/api/v1/stores", "region"), ("hq", f"/api/v1/stores/{home}/tasks", "status"),
        ("hq", f"/api/v1/stores/{home}/tasks", "kind"), ("hq", "/api/v1/reports/compliance", "region"),
        ("hq", "/api/v1/reports/overdue", "region"), ("hq", "/api/v1/reports/tasks.csv", "region"),
        ("hq", "/api/v1/stores", "cursor"), ("hq", f"/api/v1/stores/{home}/tasks", "cursor"),
    ]:
        add(f"NUL in query {param}", role, "GET", f"{path}?{param}=a%00b", allowed=(400, 422))
    # Far dates in every date field of the bodies.
    date_fields = {
        f"/api/v1/stores/{home}/tasks": [("due_at", FAR_INSTANTS), ("expires_at", FAR_INSTANTS)],
        "/api/v1/tasks/{open_task}": [("due_at", FAR_INSTANTS)],
        "/api/v1/tasks/{review_task}/complete": [(("evidence", 0, "taken_at"), FAR_INSTANTS)],
        "/api/v1/campaigns": [("due_local", FAR_LOCAL)],
        f"/api/v1/stores/{home}/closures": [("date", FAR_DATES)],
        "/api/v1/integrations/price-changes": [("effective_at", FAR_LOCAL + FAR_INSTANTS)],
        "/api/v1/integrations/deliveries": [("expected_at", FAR_INSTANTS)],
    }
    for role, method, path, make in writes:
        for leaf, values in date_fields.get(path, []):
            leaf = leaf if isinstance(leaf, tuple) else (leaf,)
            for value in values:
                body = replaced(make(), leaf, value)
                add(f"{dotted(leaf)} = {value}", role, method, path, body, headers=headers_for.get(method, {}),
                    allowed=(400, 409, 422))
    campaign_due_at = {"title": "Attack campaign", "target": {"store_codes": [code]}}
    for value in FAR_INSTANTS:
        add(f"campaign due_at = {value}", "hq", "POST", "/api/v1/campaigns",
            dict(campaign_due_at, due_at=value), allowed=(400, 422))
    # Far dates in query parameters: refused or answered, never a crash.
    for value in FAR_DATES + ["-262144-01-01", "262143-01-01"]:
        q = urllib.parse.quote(value)
        add(f"compliance to={value}", "hq", "GET", f"/api/v1/reports/compliance?to={q}", allowed=None)
        add(f"compliance from={value}", "hq", "GET", f"/api/v1/reports/compliance?from={q}", allowed=None)
        add(f"tasks.csv from/to={value}", "hq", "GET", f"/api/v1/reports/tasks.csv?from={q}&to={q}", allowed=None)
        # 204 only if the POST above wrongly stored that day.
        add(f"closure DELETE {value}", "hq", "DELETE", f"/api/v1/stores/{home}/closures/{q}",
            allowed=(204, 400, 404, 422))
    for value in FAR_INSTANTS:
        q = urllib.parse.quote(value)
        add(f"task list due_before={value}", "hq", "GET", f"/api/v1/stores/{home}/tasks?due_before={q}",
            allowed=None)
    # Numbers past their type's range.
    number_fields = [
        ("hq", "POST", "/api/v1/task-templates", "estimated_minutes"),
        ("hq", "POST", "/api/v1/task-templates", "due_window_minutes"),
        ("hq", "PATCH", f"/api/v1/task-templates/{ctx['template']}", "estimated_minutes"),
        ("integration", "POST", "/api/v1/integrations/stock-alerts", "on_hand"),
    ]
    by_path = {(m, p): make for _, m, p, make in writes}
    for role, method, path, key in number_fields:
        for value in BIG_NUMBERS:
            add(f"{key} = {value}", role, method, path, replaced(by_path[(method, path)](), (key,), value),
                allowed=(400, 422) if key != "on_hand" or value > 2**63 - 1 or value < -(2**63) else None)
    for value in BIG_NUMBERS:
        body = by_path[("POST", "/api/v1/integrations/deliveries")]()
        body["lines"][0]["qty"] = value
        add(f"lines[0].qty = {value}", "integration", "POST", "/api/v1/integrations/deliveries", body,
            allowed=(400, 422))
        body = by_path[("POST", "/api/v1/tasks/{review_task}/complete")]()
        body["evidence"][0]["size_bytes"] = value
        # Documented as 0 to 1 GiB: a 1 GiB photo is fine, 2 GiB is not.
        add(f"evidence[0].size_bytes = {value}", "hq", "POST", "/api/v1/tasks/{review_task}/complete", body,
            allowed=(200, 409) if 0 <= value <= 2**30 else (400, 409, 422))
    for raw_price in ["1e400", "-1", "0", "1.23456", "99999999999999999999.99", "\"1.29\"", "\"1,29\""]:
        body = json.dumps(by_path[("POST", "/api/v1/integrations/price-changes")]()).replace('"new_price": 0.99',
                                                                                           f'"new_price": {raw_price}')
        add(f"new_price = {raw_price}", "integration", "POST", "/api/v1/integrations/price-changes",
            raw=body.encode(), headers={"Content-Type": "application/json"},
            # PRODUCT §4: a JSON number or a decimal string, at most 4 fractional digits.
            allowed=(202,) if raw_price == '"1.29"' else None if raw_price == "0" else (400, 422))
    for value in ["4294967296", "-1", "0", "201", "1e3", "99999999999999999999"]:
        add(f"limit={value}", "hq", "GET", f"/api/v1/stores?limit={value}", allowed=(400, 422))
    add("template version=2^31", "hq", "GET", f"/api/v1/task-templates/{ctx['template']}?version=2147483648",
        allowed=(400, 404, 422))
    add("template version=-1", "hq", "GET", f"/api/v1/task-templates/{ctx['template']}?version=-1",
        allowed=(400, 404, 422))
    # Idempotency-Key.
    task_body = by_path[("POST", f"/api/v1/stores/{home}/tasks")]
    for name, key in [("a space", "key with space"), ("a tab", "key\twith-tab"), ("201 characters", "k" * 201),
                      ("no characters", ""), ("non-ASCII", "ключ"), ("a DEL", "key\x7f")]:
        add(f"Idempotency-Key with {name}", "hq", "POST", f"/api/v1/stores/{home}/tasks", task_body(),
            headers={"Idempotency-Key": key}, allowed=(400,))
    # Blanks around a field value are not part of it (RFC 9110 §5.5): either answer is fine.
    for name, key in [("a leading blank", " lead"), ("a trailing blank", "trail ")]:
        add(f"Idempotency-Key with {name}", "hq", "POST", f"/api/v1/stores/{home}/tasks", task_body(),
            headers={"Idempotency-Key": key + str(ctx["run"])}, allowed=(201, 400))
    add("Idempotency-Key of 200 characters", "hq", "POST", f"/api/v1/stores/{home}/tasks", task_body(),
        headers={"Idempotency-Key": "k" * 200}, allowed=(201,))
    # Cursors that decode to junk.
    junk = {
        "JSON null": b64(None), "empty array": b64([]), "a NUL string": b64("\u0000"),
        "NUL in the key": b64(["\u0000", "00000000-0000-0000-0000-000000000000"]),
        "wrong key types": b64([1, 2]), "a huge number": b64([10**30, "x"]),
        "invalid UTF-8": b64(b"\xff\xfe\xfd"), "not base64": "%%%", "padding": b64(["a"]) + "==",
        "far timestamp": b64(["+262142-12-31T23:59:59Z", "00000000-0000-0000-0000-000000000000"]),
        "a year -262143 timestamp": b64(["-262143-01-01T00:00:00Z", "00000000-0000-0000-0000-000000000000"]),
    }
    for list_name, path in [("stores", "/api/v1/stores"), ("tasks", f"/api/v1/stores/{home}/tasks"),
                            ("history", "/api/v1/tasks/{open_task}/history"),
                            ("task items", "/api/v1/tasks/{open_task}/items"),
                            ("templates", "/api/v1/task-templates"), ("webhooks", "/api/v1/webhooks"),
                            ("staff", f"/api/v1/stores/{home}/staff"),
                            ("campaign stores", "/api/v1/campaigns/{campaign}/stores")]:
        for name, cursor in junk.items():
            # A well-formed key past the last row is an empty page, not an error.
            add(f"{list_name} cursor: {name}", "hq", "GET", f"{path}?cursor={urllib.parse.quote(cursor)}",
                allowed=(200, 400, 422) if name == "far timestamp" else (400, 422))
    # If-Match that names no version.
    for value in ['"abc"', 'W/"99999999999"', '"-1"', "  ", '"1", "2"']:
        add(f"If-Match {value!r}", "hq", "PATCH", "/api/v1/tasks/{open_task}", {"priority": "low"},
            headers={"If-Match": value}, allowed=(400, 412, 422))
    # Bodies of the wrong shape.
    for name, raw in [("null", b"null"), ("an array", b"[]"), ("a string", b'"x"'), ("a number", b"1"),
                      ("2,000 nested arrays", b"[" * 2000 + b"]" * 2000), ("not JSON", b"{"),
                      ("invalid UTF-8", b'{"title": "\xff"}')]:
        add(f"task body {name}", "hq", "POST", f"/api/v1/stores/{home}/tasks", raw=raw,
            headers={"Content-Type": "application/json"}, allowed=(400, 415, 422))
        add(f"price batch body {name}", "integration", "POST", "/api/v1/integrations/price-changes", raw=raw,
            headers={"Content-Type": "application/json"}, allowed=(400, 415, 422))
    add("price batch gzip-labelled, not gzip", "integration", "POST", "/api/v1/integrations/price-changes",
        raw=b'{"batch_id": "x"}', headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        allowed=(400, 415, 422))
    add("task without Content-Type", "hq", "POST", f"/api/v1/stores/{home}/tasks", raw=b'{"title": "x"}',
        headers={}, allowed=(415,))
    add("task as text/plain", "hq", "POST", f"/api/v1/stores/{home}/tasks", raw=b'{"title": "x"}',
        headers={"Content-Type": "text/plain"}, allowed=(415,))
    return attacks


def run(api, tokens: dict[str, str], ctx: dict, ingest_done: Callable[[str], str | None]) -> list[Result]:
    """Sends every attack; `ingest_done(id)` returns the ingest's final status or None."""
    results: list[Result] = []
    pending: list[tuple[Result, str]] = []
    for attack in build(ctx):
        # A fresh task in the needed status for each attack, so no attack is answered by
        # a state check (409) before its input is looked at.
        for placeholder, make_task in ctx["fresh"].items():
            if "{" + placeholder + "}" in attack.path:
                attack.path = attack.path.replace("{" + placeholder + "}", make_task())
        status, text, payload = send(api, tokens[attack.role], attack)
        verdict = "ok"
        if status >= 500:
            verdict = f"server error {status}"
        elif attack.allowed is not None and status not in attack.allowed:
            verdict = f"answered {status}, expected {'/'.join(map(str, attack.allowed))}"
        result = Result(attack, status, text, verdict)
        results.append(result)
        if attack.ingest and status == 202 and isinstance(payload, dict) and payload.get("id"):
            pending.append((result, payload["id"]))
    # An accepted integration request must come to an end (done, or failed with its
    # errors recorded): never stay "received" because its message was dropped.
    deadline = time.monotonic() + 60
    for result, ingest_id in pending:
        final = ingest_done(ingest_id)
        while not final and time.monotonic() < deadline:
            time.sleep(1)
            final = ingest_done(ingest_id)
        if not final and result.verdict == "ok":
            result.verdict = f"accepted (202) as ingest {ingest_id}, which never finished (lost)"
        elif final:
            result.body += f" → ingest {final}"
    return results


def send(api, token: str, attack: Attack):
    """Exactly the bytes and headers of the attack (urllib would add a Content-Type)."""
    import http.client

    data = attack.raw if attack.raw is not None else (None if attack.body is None else json.dumps(attack.body).encode())
    headers = {"Authorization": f"Bearer {token}", **attack.headers}
    if attack.raw is None and data is not None:
        headers.setdefault("Content-Type", "application/json")
    host, port = urllib.parse.urlsplit(api.base).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(attack.method, attack.path, skip_accept_encoding=True)
        for k, v in headers.items():
            connection.putheader(k, v.encode("utf-8"))
        connection.putheader("Content-Length", str(len(data or b"")))
        connection.endheaders(data)
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except Exception as e:  # noqa: BLE001 - a dropped connection is a finding too
        return 599, f"no answer: {e}", None
    finally:
        connection.close()
    text = raw.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    return status, text[:400], payload


def curl(attack: Attack) -> str:
    parts = ["curl", "-X", attack.method]
    headers = dict(attack.headers)
    if attack.raw is None and attack.body is not None:
        headers.setdefault("Content-Type", "application/json")
    parts += ["-H", "'Authorization: Bearer $TOKEN'"]
    for k, v in headers.items():
        parts += ["-H", quote(f"{k}: {v}")]
    data = attack.raw if attack.raw is not None else (None if attack.body is None else json.dumps(attack.body).encode())
    if data is not None:
        text = data.decode("utf-8", errors="surrogateescape")
        parts += ["--data-binary", quote(text if len(text) < 400 else text[:60] + "…(" + str(len(text)) + " bytes)")]
    parts.append(quote("$BASE" + attack.path))
    return " ".join(parts)


def quote(s: str) -> str:
    if all(c.isalnum() or c in "-_./:=?&%+$@,{}" for c in s):
        return s
    escaped = s.encode("unicode_escape", errors="backslashreplace").decode("ascii").replace("'", "\\'")
    return "$'" + escaped + "'"
