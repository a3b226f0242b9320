"""Signed access tokens for the signaling WebSocket.

A token states a role (``homelab`` or ``client``), a name and an expiry, signed with
HMAC-SHA256 under a secret shared by whoever issues tokens and the signaling function::

    hp1.<payload>.<signature>

``payload`` is base64url (unpadded) compact JSON ``{"e":<expiry epoch s>,"n":<name>,"r":<role>}``
plus, for a client, ``"h":[<homelab names>]``: the homelabs signaling relays its signals to,
and ``"i":<credential id>`` when the token was issued with a credential (a revocation of
that credential then ends the token too)
and ``signature`` is base64url HMAC-SHA256 over ``hp1.<payload>``. Tokens travel in the
WebSocket URL (``?token=``), so every character is URL-safe.

Verification is strict: only the base64url alphabet, and only the one spelling that
``issue_token`` writes for given bytes, so no altered or appended character is ignored.
"""

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from p2p_protocol import b64url
from p2p_protocol.names import NAME_RULE, is_valid_name

TOKEN_VERSION = "hp1"  # noqa: S105 - the format tag, not a secret
ROLES = ("homelab", "client")
MIN_SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 1024
MAX_HOMELABS = 16
_CREDENTIAL_ID = re.compile(r"[0-9a-f]{16}")
SIGNATURE_LENGTH = 43
"""Characters of an HMAC-SHA256 (32 bytes) in unpadded base64url."""
_TTL = re.compile(r"(\d+)([smhd]?)")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_SECONDS = 10 * 365 * 86400


class TokenError(ValueError):
    """A token is missing, malformed, forged, expired or not allowed; str() says which."""


class SecretError(ValueError):
    """A signing secret is missing, unreadable or too short; str() says how to fix it."""


@dataclass(frozen=True)
class TokenClaims:
    role: str
    name: str
    expires_at: int
    homelabs: tuple[str, ...] = ()
    """The homelabs a client may send signals to (a homelab's token names none)."""
    credential_id: str = ""
    """The credential the token was issued with, if any (what a revocation list names)."""

    def describe(self) -> str:
        return f"{self.role} {self.name!r}"


def check_secret(secret: bytes, origin: str) -> bytes:
    """Return ``secret`` if it is long enough, else raise SecretError naming ``origin``."""
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(
            f"{origin} holds {len(secret)} bytes, but a signing secret needs at least "
            f"{MIN_SECRET_BYTES}; create one with `homelab-p2p token new-secret --out FILE`"
        )
    return secret


def parse_ttl(text: str) -> int:
    """Seconds in a lifetime like ``3600``, ``90s``, ``15m``, ``12h`` or ``30d``."""
    match = _TTL.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a lifetime: use seconds or a number with s, m, h or d")
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2)]
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"{text!r} is out of range: a lifetime is between 1 second and 10 years")
    return seconds


def _b64decode(text: str, part: str, length: int | None = None) -> bytes:
    try:
        return b64url.decode(text, f"the token's {part}", length)
    except b64url.B64Error as exc:
        raise TokenError(str(exc)) from None


def _signature(secret: bytes, signed_part: str) -> bytes:
    return hmac.new(secret, signed_part.encode("ascii"), hashlib.sha256).digest()


def issue_token(
    secret: bytes,
    role: str,
    name: str,
    ttl_seconds: int,
    *,
    now: float | None = None,
    homelabs: tuple[str, ...] = (),
    credential_id: str = "",
) -> str:
    """A token for ``role``/``name`` that expires ``ttl_seconds`` from ``now``; a client's
    names the ``homelabs`` it may reach."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not is_valid_name(name):
        raise ValueError(f"name {name!r} is not valid: use {NAME_RULE}")
    _check_homelabs(role, homelabs)
    check_secret(secret, "the secret")
    expires_at = int(time.time() if now is None else now) + ttl_seconds
    claims: dict[str, object] = {"e": expires_at, "n": name, "r": role}
    if role == "client":
        claims["h"] = list(homelabs)
    if credential_id:
        if not _CREDENTIAL_ID.fullmatch(credential_id):
            raise ValueError(f"credential id {credential_id!r} is not 16 hex digits")
        claims["i"] = credential_id
    payload = b64url.encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signed_part = f"{TOKEN_VERSION}.{payload}"
    return f"{signed_part}.{b64url.encode(_signature(secret, signed_part))}"


def _check_homelabs(role: str, homelabs: tuple[str, ...]) -> None:
    if role == "homelab":
        if homelabs:
            raise ValueError("a homelab's token names no homelabs")
        return
    if not homelabs:
        raise ValueError("a client's token names the homelabs it may reach (--homelab NAME)")
    if len(homelabs) > MAX_HOMELABS:
        raise ValueError(f"a token names at most {MAX_HOMELABS} homelabs")
    for homelab in homelabs:
        if not is_valid_name(homelab):
            raise ValueError(f"homelab {homelab!r} is not valid: use {NAME_RULE}")


def verify_token(secret: bytes, token: object, now: float | None = None) -> TokenClaims:
    """The claims of a genuine, unexpired token; TokenError says what is wrong otherwise."""
    if not isinstance(token, str) or not token:
        raise TokenError("no token was given")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
    if not token.isascii():
        raise TokenError("the token holds characters other than ASCII")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise TokenError(f"the token is not a {TOKEN_VERSION}.<payload>.<signature> token")
    payload = _b64decode(parts[1], "payload")
    signature = _b64decode(parts[2], "signature", SIGNATURE_LENGTH)
    # Compare before looking inside: an unsigned payload is never parsed.
    if not hmac.compare_digest(signature, _signature(secret, f"{parts[0]}.{parts[1]}")):
        raise TokenError(
            "the token's signature does not match (forged, or signed with another secret)"
        )
    try:
        claims = json.loads(payload)
    except ValueError:  # not UTF-8 or not JSON (UnicodeDecodeError is a ValueError)
        raise TokenError("the token's payload is not valid") from None
    if not isinstance(claims, dict):
        raise TokenError("the token's payload is not valid")
    role, name, expires_at = claims.get("r"), claims.get("n"), claims.get("e")
    if role not in ROLES or not is_valid_name(name) or type(expires_at) is not int:
        raise TokenError("the token's payload is not valid")
    assert isinstance(role, str)
    assert isinstance(name, str)
    homelabs, credential_id = claims.get("h", []), claims.get("i", "")
    if not isinstance(homelabs, list) or not all(isinstance(h, str) for h in homelabs):
        raise TokenError("the token's payload is not valid")
    if not isinstance(credential_id, str) or not (
        credential_id == "" or _CREDENTIAL_ID.fullmatch(credential_id)
    ):
        raise TokenError("the token's payload is not valid")
    try:
        _check_homelabs(role, tuple(homelabs))
    except ValueError as exc:
        raise TokenError(f"the token is not usable: {exc}; issue a new one") from None
    if expires_at <= (time.time() if now is None else now):
        when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise TokenError(f"the token expired at {when}")
    return TokenClaims(
        role=role,
        name=name,
        expires_at=expires_at,
        homelabs=tuple(homelabs),
        credential_id=credential_id,
    )


REPLY_TICKET_LENGTH = 22
"""Characters of a reply ticket: 16 bytes of HMAC-SHA256 in unpadded base64url."""


def reply_ticket(secret: bytes, homelab: str, client_connection: str) -> str:
    """What lets homelab ``homelab`` answer the client on ``client_connection``.

    Signaling hands it to the homelab with each signal of that client, and accepts a
    homelab's signal to a connection id only with the ticket for that pair: a homelab
    answers the clients that contacted it, and no one else. Bound to the homelab's name,
    not its connection, so it survives the homelab's reconnections.
    """
    signed = f"reply\n{homelab}\n{client_connection}".encode()
    return b64url.encode(hmac.new(secret, signed, hashlib.sha256).digest()[:16])


def is_reply_ticket(secret: bytes, homelab: str, client_connection: str, ticket: object) -> bool:
    if not isinstance(ticket, str) or len(ticket) != REPLY_TICKET_LENGTH:
        return False
    return hmac.compare_digest(ticket, reply_ticket(secret, homelab, client_connection))
