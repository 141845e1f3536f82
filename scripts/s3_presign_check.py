#!/usr/bin/env python3
"""What an S3-compatible store enforces on presigned uploads (docs/OBJECT-STORAGE.md).

    eval "$(scripts/dev-env env)"
    "$(scripts/py-env s3)" scripts/s3_presign_check.py [--keep]

Against S3_ENDPOINT with S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (what `scripts/dev-env
env` exports for its SeaweedFS), in a bucket of its own that it creates and removes, it
sends uploads that a presigned POST policy or a presigned PUT must accept and ones they
must refuse, and prints one line per case with the status the store answered. Exit
status 0 only when every case came out as expected: the store's answers are what
storeops relies on when it hands a device an upload URL (the device, not storeops,
sends the bytes, so the store is the only one left to check size, type and expiry).
"""

import http.client
import os
import sys
import time
import urllib.parse
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ.get("S3_ENDPOINT", "http://127.0.0.1:8333")
REGION = os.environ.get("S3_REGION", "us-east-1")
LIMIT = 1024  # bytes a policy allows in the cases below
JPEG = b"\xff\xd8\xff\xe0" + b"j" * 500


def client():
    return boto3.client(
        "s3", endpoint_url=ENDPOINT, region_name=REGION,
        aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4",
                      s3={"addressing_style": "path"
                          if os.environ.get("S3_PATH_STYLE", "true") == "true" else "virtual"}),
    )


def send(method, url, body=b"", headers=None):
    """(status, S3 error code or '') of one plain HTTP request, as a device would send it."""
    u = urllib.parse.urlsplit(url)
    conn = (http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection)(
        u.netloc, timeout=30)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body,
                     headers=headers or {})
        r = conn.getresponse()
        text = r.read().decode(errors="replace")
    finally:
        conn.close()
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""
    return r.status, code


def post_form(post, content, content_type, filename="photo.jpg", extra=None):
    """A browser's multipart/form-data POST of a presigned policy's fields and a file."""
    boundary = uuid.uuid4().hex
    fields = {**post["fields"], **(extra or {})}
    if content_type is not None:
        fields["Content-Type"] = content_type
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                 + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return send("POST", post["url"], body,
                {"Content-Type": f"multipart/form-data; boundary={boundary}"})


class Cases:
    def __init__(self, s3, bucket):
        self.s3, self.bucket, self.failed, self.rows = s3, bucket, 0, []

    def stored_type(self, key):
        """The stored object's Content-Type, or None when there is no object."""
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)["ContentType"]
        except ClientError:
            return None

    def check(self, name, answer, key, accept, content_type=None):
        """One case: `accept` says whether the store must store the object (with
        `content_type`, when given, as the type it serves it with)."""
        status, code = answer
        stored = self.stored_type(key)
        if accept:
            ok = 200 <= status < 300 and stored is not None and stored == (content_type or stored)
        else:
            ok = status >= 400 and stored is None
        self.failed += not ok
        verdict = "ok" if ok else "UNEXPECTED"
        want = "accepted" if accept else "refused"
        line = f"{verdict:10} {name:58} want {want:8} got {status} {code or '-'}" + (
            f" (stored as {stored})" if stored is not None else "")
        self.rows.append(line)
        print(line, flush=True)

    # presigned POST: a policy with a size range and a content type
    def post(self, key, conditions, expires=300):
        return self.s3.generate_presigned_post(
            self.bucket, key, Fields={"Content-Type": "image/jpeg"},
            Conditions=conditions, ExpiresIn=expires)

    def run(self):
        exact = [["content-length-range", 1, LIMIT], {"Content-Type": "image/jpeg"}]
        prefix = [["content-length-range", 1, LIMIT], ["starts-with", "$Content-Type", "image/"]]

        k = "post/ok.jpg"
        self.check("POST policy: in range, signed type", post_form(self.post(k, exact), JPEG, "image/jpeg"), k, True,
                   "image/jpeg")
        k = "post/big.jpg"
        self.check(f"POST policy: {LIMIT + 1} bytes > content-length-range",
                   post_form(self.post(k, exact), b"j" * (LIMIT + 1), "image/jpeg"), k, False)
        k = "post/big10m.jpg"
        self.check("POST policy: 10 MiB > content-length-range",
                   post_form(self.post(k, exact), b"j" * (10 << 20), "image/jpeg"), k, False)
        k = "post/empty.jpg"
        self.check("POST policy: 0 bytes < content-length-range min 1",
                   post_form(self.post(k, exact), b"", "image/jpeg"), k, False)
        k = "post/type.jpg"
        self.check("POST policy: Content-Type text/html, policy image/jpeg",
                   post_form(self.post(k, exact), JPEG, "text/html"), k, False)
        k = "post/prefix-ok.png"
        self.check("POST policy starts-with image/: image/png",
                   post_form(self.post(k, prefix), JPEG, "image/png"), k, True,
                   "image/png")
        k = "post/prefix-bad.svg"
        self.check("POST policy starts-with image/: application/pdf",
                   post_form(self.post(k, prefix), JPEG, "application/pdf"), k, False)
        k = "post/other-key.jpg"
        p = self.post("post/signed-key.jpg", exact)
        self.check("POST policy for another key",
                   post_form(p, JPEG, "image/jpeg", extra={"key": k}), k, False)
        k = "post/expired.jpg"
        p = self.post(k, exact, expires=1)
        time.sleep(2.5)
        self.check("POST policy expired (ExpiresIn=1, sent 2.5 s later)",
                   post_form(p, JPEG, "image/jpeg"), k, False)
        k = "post/tampered.jpg"
        p = self.post(k, exact)
        p["fields"]["x-amz-signature"] = "0" * 64
        self.check("POST policy with a wrong signature", post_form(p, JPEG, "image/jpeg"), k, False)

        # presigned PUT: Content-Type (and optionally Content-Length) signed as headers
        def put_url(key, expires=300, **params):
            return self.s3.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key, **params},
                ExpiresIn=expires)

        k = "put/ok.jpg"
        self.check("PUT signed Content-Type image/jpeg: image/jpeg",
                   send("PUT", put_url(k, ContentType="image/jpeg"), JPEG, {"Content-Type": "image/jpeg"}), k, True,
                   "image/jpeg")
        k = "put/type.jpg"
        self.check("PUT signed Content-Type image/jpeg: text/html",
                   send("PUT", put_url(k, ContentType="image/jpeg"), JPEG, {"Content-Type": "text/html"}), k, False)
        k = "put/notype.jpg"
        self.check("PUT signed Content-Type image/jpeg: header left out",
                   send("PUT", put_url(k, ContentType="image/jpeg"), JPEG), k, False)
        k = "put/len-ok.jpg"
        self.check(f"PUT signed Content-Length {len(JPEG)}: {len(JPEG)} bytes",
                   send("PUT", put_url(k, ContentType="image/jpeg", ContentLength=len(JPEG)), JPEG,
                        {"Content-Type": "image/jpeg"}), k, True)
        k = "put/len-big.jpg"
        self.check(f"PUT signed Content-Length {len(JPEG)}: {len(JPEG) * 4} bytes",
                   send("PUT", put_url(k, ContentType="image/jpeg", ContentLength=len(JPEG)), JPEG * 4,
                        {"Content-Type": "image/jpeg"}), k, False)
        k = "put/unbounded.jpg"
        self.check("PUT, Content-Length not signed: 10 MiB (no size bound)",
                   send("PUT", put_url(k, ContentType="image/jpeg"), b"j" * (10 << 20),
                        {"Content-Type": "image/jpeg"}), k, True, "image/jpeg")
        k = "put/expired.jpg"
        u = put_url(k, expires=1, ContentType="image/jpeg")
        time.sleep(2.5)
        self.check("PUT expired (ExpiresIn=1, sent 2.5 s later)",
                   send("PUT", u, JPEG, {"Content-Type": "image/jpeg"}), k, False)
        k = "put/other-key.jpg"
        u = put_url("put/signed-key.jpg", ContentType="image/jpeg").replace("signed-key", "other-key")
        self.check("PUT URL edited to another key", send("PUT", u, JPEG, {"Content-Type": "image/jpeg"}), k, False)
        k = "put/longer.jpg"
        u = put_url(k, ContentType="image/jpeg").replace("X-Amz-Expires=300", "X-Amz-Expires=3600")
        self.check("PUT URL edited to live longer (X-Amz-Expires 300 -> 3600)",
                   send("PUT", u, JPEG, {"Content-Type": "image/jpeg"}), k, False)
        k = "put/week.jpg"
        self.check("PUT signed for 604801 s (> 7 days, AWS's maximum)",
                   send("PUT", put_url(k, expires=604801, ContentType="image/jpeg"), JPEG,
                        {"Content-Type": "image/jpeg"}), k, False)


def main(argv):
    s3 = client()
    bucket = f"presign-check-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)  # the dev-env identity is an admin: any test may
    print(f"store {ENDPOINT}, bucket {bucket}", flush=True)
    cases = Cases(s3, bucket)
    try:
        cases.run()
    finally:
        if "--keep" not in argv:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for o in page.get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=o["Key"])
            s3.delete_bucket(Bucket=bucket)
    total = len(cases.rows)
    print(f"{total - cases.failed} passed, {cases.failed} failed")
    return 1 if cases.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
