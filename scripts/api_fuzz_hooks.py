"""Schemathesis hooks for scripts/api_fuzz.py (loaded through `hooks` in its config).

A client never reuses an Idempotency-Key for a different request; the generator does (it
draws short keys such as "0" again and again), and the server rightly refuses the second
request with 422 (the key "was already used for a different request"). So a key already
sent with another request gets a suffix that makes it new; a key sent again with the same
request is left alone (that is a replay, which must answer as the first time). Nothing
else is changed: an invalid key stays invalid.
"""

import hashlib
import itertools
import json

import schemathesis

_first_request: dict[str, str] = {}
_suffixes = itertools.count(1)


def _fingerprint(case) -> str:
    body = json.dumps(case.body, sort_keys=True, default=str) if case.body is not None else ""
    return hashlib.sha256(f"{case.method} {case.formatted_path}\n{body}".encode()).hexdigest()


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name, key in list(headers.items()):
        if name.lower() != "idempotency-key" or not isinstance(key, str):
            continue
        fingerprint = _fingerprint(case)
        first = _first_request.setdefault(key, fingerprint)
        if first != fingerprint:
            fresh = f"{key}~{next(_suffixes)}"
            _first_request[fresh] = fingerprint
            headers[name] = fresh
            case.headers = headers
