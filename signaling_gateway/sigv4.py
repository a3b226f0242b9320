"""The management API's caller check: a request must be signed (SigV4) with the gateway's secret.

boto3 signs every call with AWS Signature Version 4. The gateway gives the handler's boto3
session its management secret as the secret access key, and the management API recomputes
each request's signature with botocore's own signer and compares. Only holding the secret
counts: the access key id and the region are taken from the request as signed. The body is
always part of the signature (botocore hashes it over plain HTTP), and the signing time
must be within ``MAX_CLOCK_SKEW`` of this host's clock, which bounds the replay of a
request captured on loopback (only root can capture it).
"""

import calendar
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
"""The name boto3's ``apigatewaymanagementapi`` client signs for."""
MAX_CLOCK_SKEW = 300.0
"""Seconds a request's X-Amz-Date may be off this host's clock, as on AWS."""
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s,]{1,128})/(?P<date>\d{8})/"
    r"(?P<region>[a-z0-9-]{1,64})/(?P<service>[a-z0-9-]{1,64})/aws4_request, ?"
    r"SignedHeaders=(?P<headers>[a-z0-9-]+(?:;[a-z0-9-]+)*), ?Signature=(?P<signature>[0-9a-f]{64})"
)
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")


def new_secret() -> str:
    """A secret for one run of the gateway, known only to its process."""
    return secrets.token_urlsafe(32)


class SignatureError(Exception):
    """A request is not signed with the secret; str() says why, without the secret."""


def _one(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name.lower(), [])
    if not values:
        raise SignatureError(f"it has no {name} header")
    if len(values) > 1:
        raise SignatureError(f"it has {len(values)} {name} headers")
    return values[0]


def verify(
    secret: str,
    method: str,
    raw_path: str,
    header_items: Iterable[tuple[str, str]],
    body: bytes,
    *,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless the request was signed with ``secret`` lately.

    ``raw_path`` is the request target as sent (percent-encoding and query kept), as the
    signer saw it in its URL.
    """
    headers: dict[str, list[str]] = {}
    for name, value in header_items:
        headers.setdefault(name.lower(), []).append(value)
    match = _AUTHORIZATION.fullmatch(_one(headers, "Authorization").strip())
    if match is None:
        raise SignatureError("its Authorization header is not an AWS4-HMAC-SHA256 signature")
    if match["service"] != SERVICE:
        raise SignatureError(f"it is signed for the service {match['service']!r}, not {SERVICE}")
    amz_date = _one(headers, "X-Amz-Date")
    try:
        if not _AMZ_DATE.fullmatch(amz_date):
            raise ValueError(amz_date)
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise SignatureError("its X-Amz-Date is not a SigV4 timestamp (YYYYMMDDTHHMMSSZ)") from None
    skew = abs((time.time() if now is None else now) - signed_at)
    if skew > MAX_CLOCK_SKEW:
        raise SignatureError(
            f"it was signed {skew:.0f} s away from this host's clock (at most "
            f"{MAX_CLOCK_SKEW:.0f} s)"
        )
    signed_names = match["headers"].split(";")
    if any(name not in headers for name in signed_names):
        raise SignatureError("it lacks a header its signature covers")
    # botocore would sign this header's value in place of the body's hash: it must be that hash.
    claimed_hash = headers.get("x-amz-content-sha256")
    if claimed_hash is not None and claimed_hash != [hashlib.sha256(body).hexdigest()]:
        raise SignatureError("its X-Amz-Content-SHA256 is not the hash of its body")

    request = AWSRequest(method=method, url=f"http://localhost{raw_path}", data=body)
    for name in signed_names:
        for value in headers[name]:
            request.headers[name] = value  # HTTPHeaders: a second value is added, not replaced
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["key"], secret), SERVICE, match["region"])
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError("its signature is not made with this gateway's management secret")
