"""Schemathesis hooks for scripts/api_fuzz.py (loaded through `hooks` in its config).

They make the generator behave like a client in the three respects that a schema cannot
express, and change nothing else:

- Idempotency-Key: a client never reuses a key for a different request; the generator
  does (it draws short keys such as "0" again and again), and the server rightly refuses
  the second request with 422. A key already sent with another request gets a suffix that
  makes it new; the same key with the same request is left alone (a replay, which must
  answer as the first time); an invalid key stays invalid.
- cursor: a client pages a list with the cursors that list gave it. Schemathesis also
  feeds values it saw in any response into parameters of the same name, so one list's
  `next_cursor` reaches another list, which rightly refuses it (422). A cursor that some
  list issued, passed to a different list, is replaced by one this list issued (or
  dropped when it has none). Cursors nobody issued (the generator's own) are left alone.
  API_FUZZ_CURSORS names a JSON file {operation path: [cursors]} of the fixtures' ones.
- since: an app continues the changes feed from a token the feed gave it. The parameter
  is bound to the fixtures' tokens, but the coverage phase draws its own values (`0`)
  past that binding; any `since` the feed did not issue is replaced by one it did (the
  file's "since" entry). A made-up token's 422 is tested in tests/it/sync.rs.
- If-None-Match: a client sends back the ETag a URL gave it, which the generator cannot
  know. Every other If-None-Match the generator draws is replaced by the last ETag that
  URL answered (when it answered one), so 304s are reached as well as the generator's
  own values (tags that match nothing, `*`, lists).

And one filter: a schema-valid request refused (positive_data_acceptance) is not counted
when every field the server names in its 422 breaks a rule of STATE_RULES: rules that
depend on stored data, on today's date, on another field or on items being unique by
one member, which JSON Schema cannot express. Every other refusal counts; a 422 naming one such rule and one ordinary field
counts too. The run's summary says how many were dropped.
"""

import ast
import hashlib
import itertools
import json
import os
import re
import sys
import threading
from collections import defaultdict

import schemathesis

# CPython 3.11 (3.11.7 here) keeps the AST constructor's recursion depth in shared state,
# so two threads in ast.parse at once can fail with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905). Hypothesis parses source files to
# describe lambdas, from both of Schemathesis' workers; one lock makes those parses take
# turns. It changes no generated case.
if sys.version_info < (3, 13):
    _parse_alone = threading.Lock()
    _ast_parse = ast.parse

    def _serialized_parse(*args, **kwargs):
        with _parse_alone:
            return _ast_parse(*args, **kwargs)

    ast.parse = _serialized_parse

_first_request: dict[str, str] = {}
_suffixes = itertools.count(1)
_issued: dict[str, list[str]] = defaultdict(list)
if os.environ.get("API_FUZZ_CURSORS"):
    with open(os.environ["API_FUZZ_CURSORS"]) as f:
        for path, cursors in json.load(f).items():
            _issued[path].extend(c for c in cursors if c)


_etags: dict[str, str] = {}
_etag_turns = itertools.count()


def _known_etag(case) -> None:
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() != "if-none-match":
            continue
        known = _etags.get(case.formatted_path)
        if known and next(_etag_turns) % 2 == 0:
            headers[name] = known
            case.headers = headers


def _fingerprint(case) -> str:
    body = json.dumps(case.body, sort_keys=True, default=str) if case.body is not None else ""
    return hashlib.sha256(f"{case.method} {case.formatted_path}\n{body}".encode()).hexdigest()


def _unique_idempotency_key(case) -> None:
    headers = case.headers or {}
    for name, key in list(headers.items()):
        if name.lower() != "idempotency-key" or not isinstance(key, str):
            continue
        fingerprint = _fingerprint(case)
        if _first_request.setdefault(key, fingerprint) != fingerprint:
            fresh = f"{key}~{next(_suffixes)}"
            _first_request[fresh] = fingerprint
            headers[name] = fresh
            case.headers = headers


def _issued_since(case) -> None:
    query = case.query or {}
    tokens = _issued.get("since", [])
    if "since" in query and tokens and query["since"] not in tokens:
        query["since"] = tokens[next(_etag_turns) % len(tokens)]
        case.query = query


def _own_cursor(case) -> None:
    query = case.query or {}
    cursor = query.get("cursor")
    if not isinstance(cursor, str) or not cursor:
        return
    own = _issued.get(case.operation.path, [])
    if cursor in own:
        return
    if any(cursor in cursors for path, cursors in _issued.items() if path != case.operation.path):
        if own:
            query["cursor"] = own[0]
        else:
            del query["cursor"]
        case.query = query


# (operation, field regex, message prefix): why a schema cannot say it.
STATE_RULES = [
    # Stored data: whether an id names something of that store, or the task's checklist.
    ("POST /api/v1/stores/{store_id}/tasks", r"assignee_id", "is not active staff of this store"),
    ("PATCH /api/v1/tasks/{task_id}", r"assignee_id", "is not active staff of this store"),
    ("POST /api/v1/stores/{store_id}/tasks", r"template_id", "no such template"),
    ("POST /api/v1/campaigns", r"template_id", "no such template"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "this task has no checklist"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "is not an item of this checklist"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "is required"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "must be true or false"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "must be a number"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "must be text"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "must not be empty"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "must be an evidence reference"),
    ("POST /api/v1/announcements", r"supersedes", "unknown announcement"),
    ("POST /api/v1/announcements", r"supersedes", "a draft is changed by publishing"),
    # A photo answer names a grant of that task whose upload is in the object store.
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "no such evidence for this task"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "this evidence was granted for another"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "this evidence is already attached"),
    ("POST /api/v1/tasks/{task_id}/complete", r"answers\..*", "the photo has not been uploaded"),
    ("POST /api/v1/tasks/{task_id}/evidence", r"item_key", "is not a photo item of this task's checklist"),
    ("GET /api/v1/stores", r"region", "no such region"),
    ("GET /api/v1/reports/compliance", r"region", "no such region"),
    ("GET /api/v1/reports/overdue", r"region", "no such region"),
    ("GET /api/v1/reports/tasks.csv", r"region", "no such region"),
    # Items unique by one member: JSON Schema's uniqueItems compares whole items.
    ("POST /api/v1/task-templates", r"checklist\[\d+\]\.key", "duplicates an earlier key"),
    ("PATCH /api/v1/task-templates/{template_id}", r"checklist\[\d+\]\.key", "duplicates an earlier key"),
    # Today's date.
    ("POST /api/v1/stores/{store_id}/tasks", r"due_at", "must be within a year of now"),
    ("PATCH /api/v1/tasks/{task_id}", r"due_at", "must be within a year of now"),
    ("POST /api/v1/stores/{store_id}/closures", r"date", "must not be in the past"),
    ("POST /api/v1/announcements", r"publish_at|publish_local", "must be at most 366 days ahead"),
    ("POST /api/v1/announcements", r"expires_at", "must be after the publishing time"),
    ("POST /api/v1/announcements", r"expires_at", "must be at most 366 days after publishing"),
    ("POST /api/v1/stores/{store_id}/closures", r"date", "must be within two years"),
    # Another field of the same request.
    ("POST /api/v1/stores/{store_id}/tasks", r"expires_at", "must be after due_at"),
    ("POST /api/v1/stores/{store_id}/tasks", r"expires_at", "must be within a year after due_at"),
    ("GET /api/v1/reports/compliance", r"from", "must not be after"),
    ("GET /api/v1/reports/compliance", r"to", "a period covers at most"),
    ("GET /api/v1/reports/tasks.csv", r"from", "must not be after"),
    ("GET /api/v1/reports/tasks.csv", r"to", "a period covers at most"),
]


def _state_rule(label: str, field: str, message: str) -> bool:
    return any(
        label == operation and re.fullmatch(pattern, field, re.S) and message.startswith(prefix)
        for operation, pattern, prefix in STATE_RULES
    )


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if type(failure).__name__ != "RejectedPositiveData" or response.status_code != 422:
        return True
    try:
        errors = json.loads(response.content).get("errors") or []
    except (ValueError, AttributeError):
        return True
    label = f"{case.method.upper()} {case.operation.path}"
    dropped = bool(errors) and all(
        _state_rule(label, str(e.get("field", "")), str(e.get("message", ""))) for e in errors
    )
    return not dropped


@schemathesis.hook
def before_call(context, case, kwargs):
    _unique_idempotency_key(case)
    _own_cursor(case)
    _issued_since(case)
    _known_etag(case)


@schemathesis.hook
def after_call(context, case, response):
    if case.method.upper() != "GET" or response.status_code != 200:
        return
    etag = (response.headers.get("etag") or [None])[0]
    if etag:
        _etags[case.formatted_path] = etag
    try:
        cursor = json.loads(response.content).get("next_cursor")
    except (ValueError, AttributeError):
        return
    if isinstance(cursor, str) and cursor and cursor not in _issued[case.operation.path]:
        _issued[case.operation.path].append(cursor)

