#!/usr/bin/env python3
"""scripts/dev-env's S3 steps, run with the venv of `scripts/py-env s3`.

    s3_dev.py ready [--timeout SECONDS] [BUCKET...]

Waits (bounded) until S3_ENDPOINT answers a request signed with S3_ACCESS_KEY_ID /
S3_SECRET_ACCESS_KEY (so the identity config is loaded, not just the port open), then
creates each BUCKET that does not exist yet. Exit 1 with the last error otherwise.
"""

import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def client():
    return boto3.client(
        "s3", endpoint_url=os.environ["S3_ENDPOINT"],
        region_name=os.environ.get("S3_REGION", "us-east-1"),
        aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}),
    )


def ready(args):
    timeout = 60.0
    if args[:1] == ["--timeout"]:
        timeout, args = float(args[1]), args[2:]
    s3 = client()
    deadline = time.monotonic() + timeout
    while True:
        try:
            have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            for bucket in args:
                if bucket not in have:
                    s3.create_bucket(Bucket=bucket)
                    print(f"s3_dev: created bucket {bucket}", file=sys.stderr)
            return 0
        except (BotoCoreError, ClientError) as e:
            if time.monotonic() > deadline:
                print(f"s3_dev: {os.environ['S3_ENDPOINT']} not ready after {timeout:.0f}s: {e}",
                      file=sys.stderr)
                return 1
            time.sleep(0.5)


if __name__ == "__main__":
    if sys.argv[1:2] != ["ready"]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(ready(sys.argv[2:]))
