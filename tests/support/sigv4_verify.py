"""Recomputes the AWS Signature Version 4 of one received request with botocore's signer.

An independent implementation for the Bedrock fake of tests/it/bedrock.rs: agentctl signs with
the `aws-sigv4` crate, this checks with botocore (the signer of the AWS SDK for Python).

stdin: {"method", "url", "headers": [[name, value], ...], "body_b64", "access_key", "secret_key"}
stdout: {"ok": bool, "expected": hex, "got": hex, "scope": "date/region/service", "signed_headers"}
"""
import base64
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    req = json.load(sys.stdin)
    headers = {k.lower(): v for k, v in req["headers"]}
    auth = headers.pop("authorization", "")
    prefix = "AWS4-HMAC-SHA256 "
    if not auth.startswith(prefix):
        print(json.dumps({"ok": False, "error": "no AWS4-HMAC-SHA256 authorization header"}))
        return
    parts = dict(p.strip().split("=", 1) for p in auth[len(prefix):].split(","))
    access_key, date, region, service, terminator = parts["Credential"].split("/")
    signed = parts["SignedHeaders"].split(";")
    creds = Credentials(req["access_key"], req["secret_key"], headers.get("x-amz-security-token"))
    # Only the headers the client signed: botocore signs every header it is given.
    request = AWSRequest(
        method=req["method"],
        url=req["url"],
        data=base64.b64decode(req["body_b64"]),
        headers={k: v for k, v in headers.items() if k in signed},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(creds, service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    ok = (
        expected == parts["Signature"]
        and access_key == req["access_key"]
        and terminator == "aws4_request"
        and date == headers["x-amz-date"][:8]
        and signer.signed_headers(signer.headers_to_sign(request)) == parts["SignedHeaders"]
    )
    print(json.dumps({
        "ok": ok,
        "expected": expected,
        "got": parts["Signature"],
        "scope": f"{date}/{region}/{service}",
        "signed_headers": parts["SignedHeaders"],
    }))


main()
