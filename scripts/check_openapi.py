#!/usr/bin/env python3
"""Validates the OpenAPI document a storeops build serves, as client generators read it.

    scripts/check_openapi.py --bin target/debug/storeops [--self-test]
    scripts/check_openapi.py --file openapi.json

The document is what `storeops openapi` prints (the same as GET /openapi.json of a
server with this configuration). openapi-spec-validator (scripts/requirements-dev.txt)
checks it against the OpenAPI 3.1 schema and its rules (every response has a
description, every $ref resolves, path parameters are declared, ...). `--self-test`
first proves the validator refuses broken copies of the same document, so that a
validator that accepts anything cannot pass the build. Run from scripts/test with the
project's virtualenv (scripts/py-env).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing.exceptions import Unresolvable


def log(message: str) -> None:
    print(f"check-openapi: {message}", file=sys.stderr, flush=True)


def errors_of(document: dict[str, Any]) -> list[str]:
    """Every error the validator finds, each as `where: what`."""
    found = []
    try:
        for error in OpenAPIV31SpecValidator(document).iter_errors():
            where = "/".join(str(p) for p in error.absolute_path) or "(document)"
            found.append(f"{where}: {error.message}")
    except (Unresolvable, KeyError, TypeError) as error:
        # Some breakages (a $ref to nowhere, a parameter without `in`) stop the validator
        # instead of being yielded: the document is just as invalid.
        found.append(f"the validator stopped: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    return found


def first_operation(document: dict[str, Any]) -> dict[str, Any]:
    for item in document["paths"].values():
        for method in ("get", "post", "patch", "put", "delete"):
            if method in item:
                return item[method]
    raise SystemExit("the document has no operation")


def drop_a_description(document: dict[str, Any]) -> None:
    # What issue 28 found: responses without the description OpenAPI requires.
    responses = first_operation(document)["responses"]
    del responses[next(iter(responses))]["description"]


def dangling_ref(document: dict[str, Any]) -> None:
    operation = first_operation(document)
    operation["responses"]["200"] = {
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NoSuchSchema"}}},
    }


def undeclared_path_parameter(document: dict[str, Any]) -> None:
    path = next(p for p in document["paths"] if "{" in p)
    for operation in document["paths"][path].values():
        operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("in") != "path"]


def unknown_schema_type(document: dict[str, Any]) -> None:
    schema = next(iter(document["components"]["schemas"].values()))
    schema["type"] = "text"


BREAKAGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "a response without a description": drop_a_description,
    "a $ref to a schema that does not exist": dangling_ref,
    "a path template whose parameter is not declared": undeclared_path_parameter,
    "a schema of a type JSON Schema does not have": unknown_schema_type,
}


def self_test(document: dict[str, Any]) -> list[str]:
    """The broken copies the validator accepted (none, when it works)."""
    missed = []
    for name, breakage in BREAKAGES.items():
        broken = copy.deepcopy(document)
        breakage(broken)
        found = errors_of(broken)
        if found:
            log(f"self-test: {name}: refused ({found[0].splitlines()[0][:160]})")
        else:
            missed.append(name)
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bin", help="a storeops binary: validate what `storeops openapi` prints")
    source.add_argument("--file", help="an OpenAPI document to validate")
    parser.add_argument("--self-test", action="store_true", help="first prove broken copies are refused")
    args = parser.parse_args()

    if args.bin:
        printed = subprocess.run([args.bin, "openapi"], check=True, capture_output=True, text=True, timeout=60)
        document = json.loads(printed.stdout)
        what = f"`{args.bin} openapi`"
    else:
        document = json.loads(Path(args.file).read_text())
        what = args.file
    if document.get("openapi", "").split(".")[:2] != ["3", "1"]:
        log(f"{what} is OpenAPI {document.get('openapi')!r}, not 3.1")
        return 1

    if args.self_test:
        missed = self_test(document)
        if missed:
            for name in missed:
                log(f"self-test FAILED: the validator accepted {name}")
            return 1
    found = errors_of(document)
    for error in found:
        log(error)
    operations = sum(1 for item in document["paths"].values() for k in item if k != "parameters")
    log(f"{what}: OpenAPI {document['openapi']}, {operations} operations, {len(found)} errors")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
