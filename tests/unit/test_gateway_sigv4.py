"""The management API's SigV4 check against requests signed by botocore, as boto3 signs them."""

import hashlib
import time
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from p2p_protocol.tokens import SecretError
from signaling_gateway.cli import load_management_secret
from signaling_gateway.sigv4 import SignatureError, verify

SECRET = "the-management-secret-0123456789abcdef"
PATH = "/prod/%40connections/AAAAAAAAAAAAAAA%3D"
BODY = b'{"action":"sendSignal","data":"x"}'

Signed = tuple[str, str, list[tuple[str, str]], bytes]


def signed(
    secret: str = SECRET,
    service: str = "execute-api",
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
) -> Signed:
    """A POST signed by botocore's signer now: method, raw path, header items, body."""
    request = AWSRequest(
        method="POST", url=f"http://127.0.0.1:8766{PATH}", data=body, headers=headers or {}
    )
    SigV4Auth(Credentials("signaling-gateway", secret), service, "us-east-1").add_auth(request)
    items = [("Host", "127.0.0.1:8766"), *request.headers.items()]
    return "POST", PATH, items, body


def replaced(items: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n.lower() == name.lower() else v) for n, v in items]


def test_a_request_signed_with_the_secret_passes() -> None:
    method, path, items, body = signed()
    verify(SECRET, method, path, items, body)
    # Header names are case-insensitive, as HTTP has them.
    verify(SECRET, method, path, [(n.upper(), v) for n, v in items], body)


def test_an_empty_body_passes() -> None:
    verify(SECRET, *signed(body=b""))


def test_a_request_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="not made with this gateway's management secret"):
        verify(SECRET, *signed(secret="another-secret-0123456789abcdef"))


def without(items: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in items if n.lower() != name.lower()]


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda m, p, h, b: (m, p, h, b'{"forged":1}'), "not made with"),
        (lambda m, p, h, b: ("DELETE", p, h, b), "not made with"),
        (lambda m, p, h, b: (m, p.replace("AAA", "BBB"), h, b), "not made with"),
        (lambda m, p, h, b: (m, p + "?x=1", h, b), "not made with"),
        (lambda m, p, h, b: (m, p, replaced(h, "Host", "127.0.0.1:1"), b), "not made with"),
        (lambda m, p, h, b: (m, p, without(h, "Authorization"), b), "no Authorization header"),
        (lambda m, p, h, b: (m, p, [*h, *h], b), "2 Authorization headers"),
        (
            lambda m, p, h, b: (m, p, replaced(h, "Authorization", "Bearer x"), b),
            "not an AWS4-HMAC-SHA256 signature",
        ),
        (lambda m, p, h, b: (m, p, without(h, "X-Amz-Date"), b), "no X-Amz-Date header"),
        (
            lambda m, p, h, b: (m, p, replaced(h, "X-Amz-Date", "20241399T999999Z"), b),
            "not a SigV4 timestamp",
        ),
        (lambda m, p, h, b: (m, p, without(h, "Host"), b), "lacks a header its signature covers"),
    ],
    ids=[
        "other-body",
        "other-method",
        "other-connection",
        "added-query",
        "other-host",
        "no-authorization",
        "two-authorizations",
        "not-sigv4",
        "no-date",
        "bad-date",
        "signed-header-missing",
    ],
)
def test_a_changed_request_is_refused(tamper, why: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SignatureError, match=why):
        verify(SECRET, *tamper(*signed()))


def test_a_content_hash_header_must_be_the_body_hash() -> None:
    """botocore signs X-Amz-Content-SHA256 in place of the body: UNSIGNED-PAYLOAD would
    leave the body free to change."""
    verify(SECRET, *signed(headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()}))
    with pytest.raises(SignatureError, match="not the hash of its body"):
        verify(SECRET, *signed(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}))


def test_a_request_for_another_service_is_refused() -> None:
    with pytest.raises(SignatureError, match="signed for the service 's3', not execute-api"):
        verify(SECRET, *signed(service="s3"))


def test_the_clock_skew_is_bounded_to_five_minutes() -> None:
    request = signed()
    now = time.time()
    verify(SECRET, *request, now=now + 290)
    verify(SECRET, *request, now=now - 290)
    for off in (310, -310):
        with pytest.raises(SignatureError, match=r"signed 3\d\d s away from this host's clock"):
            verify(SECRET, *request, now=now + off)


@pytest.mark.parametrize(
    ("content", "mode", "why"),
    [
        (SECRET + "\n", 0o600, None),
        ("", 0o600, "holds 0 bytes"),
        ("short\n", 0o600, "holds 5 bytes"),
        (SECRET, 0o644, "is open to other users; make it readable by its owner only"),
        (SECRET, 0o660, "is open to other users"),
    ],
    ids=["good", "empty", "short", "world-readable", "group-writable"],
)
def test_a_management_secret_file_is_long_and_private(
    tmp_path: Path, content: str, mode: int, why: str | None
) -> None:
    path = tmp_path / "management-secret"
    path.write_text(content)
    path.chmod(mode)
    if why is None:
        assert load_management_secret(path) == SECRET
        return
    with pytest.raises(SecretError, match=why):
        load_management_secret(path)


def test_a_binary_management_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "management-secret"
    path.write_bytes(b"\xff" * 40)
    path.chmod(0o600)
    with pytest.raises(SecretError, match="is not text"):
        load_management_secret(path)
