import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import SECRET
from p2p_protocol import b64url
from p2p_protocol.tokens import (
    SecretError,
    TokenError,
    issue_token,
    parse_ttl,
    verify_token,
)
from p2p_runtime.credentials import load_secret_file


def test_issued_token_verifies_with_its_claims() -> None:
    now = 1_800_000_000
    claims = verify_token(
        SECRET, issue_token(SECRET, "homelab", "laptop", 60, now=now), now=now + 59
    )
    assert (claims.role, claims.name, claims.expires_at) == ("homelab", "laptop", now + 60)


def test_token_is_url_safe() -> None:
    token = issue_token(SECRET, "client", "alice.b_c-d", 86400, homelabs=("laptop",))
    assert all(c.isalnum() or c in "-_." for c in token)


def test_expired_token_is_refused() -> None:
    token = issue_token(SECRET, "client", "alice", 60, now=1_000, homelabs=("laptop",))
    with pytest.raises(TokenError, match="expired at 1970-01-01 00:17:40 UTC"):
        verify_token(SECRET, token, now=1_060)


def test_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token(b"x" * 32, "client", "alice", 60, homelabs=("laptop",))
    with pytest.raises(TokenError, match="signature does not match"):
        verify_token(SECRET, token)


def test_changed_claims_break_the_signature() -> None:
    version, payload, signature = issue_token(
        SECRET, "client", "alice", 60, homelabs=("laptop",)
    ).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["r"] = "homelab"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature does not match"):
        verify_token(SECRET, f"{version}.{forged}.{signature}")


@pytest.mark.parametrize(
    "token",
    [None, "", 42, "abc", "hp1.a", "hp2.a.b", "hp1.a.b.c", "hp1.!!!.@@@", "x" * 2000],
)
def test_malformed_tokens_are_refused_with_a_reason(token: object) -> None:
    with pytest.raises(TokenError) as refused:
        verify_token(SECRET, token)
    assert str(refused.value)


def test_a_signed_but_invalid_payload_is_refused() -> None:
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b'{"r":"root","n":"x","e":9999999999}').rstrip(b"=").decode()
    signature = hmac.new(SECRET, f"hp1.{payload}".encode(), hashlib.sha256).digest()
    token = f"hp1.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(TokenError, match="payload is not valid"):
        verify_token(SECRET, token)


@pytest.mark.parametrize(
    ("role", "name"),
    [("admin", "laptop"), ("homelab", ""), ("homelab", "no spaces"), ("client", "-x")],
)
def test_issue_refuses_bad_roles_and_names(role: str, name: str) -> None:
    with pytest.raises(ValueError, match="not"):
        issue_token(SECRET, role, name, 60)


def test_issue_refuses_a_short_secret() -> None:
    with pytest.raises(SecretError, match="at least 32"):
        issue_token(b"short", "client", "alice", 60, homelabs=("laptop",))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), (" 2D ", 172800)],
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "1w", "1.5h", "d", "99999d"])
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"lifetime|out of range"):
        parse_ttl(text)


def test_load_secret_file_strips_the_newline(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(SECRET + b"\n")
    assert load_secret_file(path) == SECRET


def test_load_secret_file_explains_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=r"cannot read the secret file .*No such file"):
        load_secret_file(tmp_path / "absent")


def test_verification_uses_the_current_time_by_default() -> None:
    token = issue_token(SECRET, "client", "alice", 1, now=time.time() - 10, homelabs=("laptop",))
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token)


BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _altered_padding_bits(token: str) -> str:
    """The token with the unused low bits of its last character set differently."""
    last = token[-1]
    return token[:-1] + BASE64URL[BASE64URL.index(last) ^ 1]


@pytest.mark.parametrize(
    ("alter", "why"),
    [
        (lambda t: t.replace(".", ".é", 1), "characters other than ASCII"),
        (lambda t: t + "é", "characters other than ASCII"),
        (lambda t: t[:-1] + "!", "signature is not base64url"),
        (lambda t: t[:-2] + "+/", "signature is not base64url"),
        (lambda t: t + "=", "signature is not base64url"),
        (lambda t: t.replace(".", ".~", 1), "payload is not base64url"),
        (lambda t: t + "!!", "signature is not base64url"),
        (lambda t: t + "AAAA", "signature is 47 characters long, not 43"),
        (lambda t: t[:-1], "signature is 42 characters long, not 43"),
        (_altered_padding_bits, "signature is not canonical base64url"),
    ],
    ids=[
        "non-ascii-payload",
        "non-ascii-appended",
        "non-alphabet",
        "standard-alphabet",
        "padding",
        "tilde-in-payload",
        "junk-appended",
        "base64-appended",
        "short-signature",
        "altered-padding-bits",
    ],
)
def test_altered_tokens_are_refused_with_one_sentence(
    alter: Callable[[str], str], why: str
) -> None:
    genuine = issue_token(SECRET, "homelab", "laptop", 3600)
    altered = alter(genuine)
    assert altered != genuine
    with pytest.raises(TokenError, match=why) as refused:
        verify_token(SECRET, altered)
    assert "\n" not in str(refused.value)


def test_a_payload_with_altered_padding_bits_is_refused_before_the_signature() -> None:
    version, payload, signature = issue_token(
        SECRET, "client", "alice", 60, homelabs=("laptop",)
    ).split(".")
    assert len(payload) % 4, "the payload must end in a partial group for this test"
    with pytest.raises(TokenError, match="payload is not canonical base64url"):
        verify_token(SECRET, f"{version}.{_altered_padding_bits(payload)}.{signature}")


def test_a_payload_of_impossible_length_is_refused() -> None:
    version, payload, signature = issue_token(
        SECRET, "client", "alice", 60, homelabs=("laptop",)
    ).split(".")
    cut = payload[: len(payload) - len(payload) % 4 + 1]  # 4n + 1 characters: no bytes have that
    with pytest.raises(TokenError, match="payload has a length no base64url text has"):
        verify_token(SECRET, f"{version}.{cut}.{signature}")


def test_a_client_token_names_its_homelabs_and_may_name_its_credential() -> None:
    token = issue_token(
        SECRET, "client", "alice", 60, homelabs=("laptop", "nas"), credential_id="0123456789abcdef"
    )
    claims = verify_token(SECRET, token)
    assert claims.homelabs == ("laptop", "nas")
    assert claims.credential_id == "0123456789abcdef"
    with pytest.raises(ValueError, match="names the homelabs it may reach"):
        issue_token(SECRET, "client", "alice", 60)
    with pytest.raises(ValueError, match="is not 16 hex digits"):
        issue_token(SECRET, "client", "alice", 60, homelabs=("laptop",), credential_id="x")
    # A client token of before scopes (no "h") is refused, saying what to do.
    payload = b64url.encode(json.dumps({"e": 2**40, "n": "old", "r": "client"}).encode())
    signed = f"hp1.{payload}"
    digest = hmac.new(SECRET, signed.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match=r"names the homelabs it may reach .*issue a new one"):
        verify_token(SECRET, f"{signed}.{b64url.encode(digest)}")
