"""End-to-end identity as data: certificates, and the statements a peer signs (docs/security.md).

The operator holds an Ed25519 signing key. It certifies each client and each homelab::

    hpc1.<payload>.<signature>

``payload`` is base64url (unpadded) compact JSON with sorted keys: ``k`` kind (``client`` or
``homelab``), ``n`` name, ``i`` id (16 hex digits, what a revocation list names), ``p`` the
holder's Ed25519 public key (base64url, 32 bytes), ``e`` expiry (epoch seconds) and, for a
client, ``h`` the homelabs and ``s`` the services it may reach (``"*"``: every one).
``signature`` is the operator's Ed25519 signature over ``hpc1.<payload>``.

An offer carries the client's certificate and a proof: its signature over the offer
statement, which names the homelab, the time and every DTLS fingerprint of the offer's SDP.
The answer carries the homelab's certificate and its signature over the answer statement,
which names the client's certificate id and the fingerprints of both SDPs. DTLS then proves
that each side holds the certificate of the fingerprints signed, so whoever relays the
signals can neither answer in the homelab's name nor sit in the middle.

This module has no cryptography (the core is standard library only): ``p2p_runtime.identity``
signs and verifies.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from p2p_protocol import b64url
from p2p_protocol.names import ECHO_LABEL, NAME_RULE, is_valid_label, is_valid_name

CERTIFICATE_VERSION = "hpc1"
OPERATOR_KEY_VERSION = "hpk1"
KINDS = ("client", "homelab")
EVERY_SERVICE = "*"
MAX_CERTIFICATE_LENGTH = 4096
MAX_SCOPE_ENTRIES = 64
"""Homelabs, and services, one certificate may name."""
PROOF_MAX_AGE = 300
"""Seconds an offer's proof is good for, either side of the homelab's clock."""
PUBLIC_KEY_LENGTH = 43
"""Characters of an Ed25519 public key (32 bytes) in unpadded base64url."""
SIGNATURE_LENGTH = 86
"""Characters of an Ed25519 signature (64 bytes) in unpadded base64url."""
_ID = re.compile(r"[0-9a-f]{16}")
_FINGERPRINT = re.compile(r"a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*")


class IdentityError(ValueError):
    """A certificate, credential or proof that cannot be used; str() says why and what to do."""


@dataclass(frozen=True)
class Certificate:
    kind: str
    name: str
    id: str
    public_key: bytes
    expires_at: int
    homelabs: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.kind} {self.name!r} (credential {self.id})"

    def may_reach(self, homelab: str) -> bool:
        return homelab in self.homelabs

    def may_open(self, service: str) -> bool:
        return EVERY_SERVICE in self.services or service in self.services

    def forbids(self, service: str) -> str:
        """Why this certificate may not open ``service`` (what both ends say), or ""."""
        if service == ECHO_LABEL or self.may_open(service):
            return ""
        shown = service[:64]  # a peer's text: what reaches a log stays short
        return (
            f"your credential ({self.name}) does not allow service {shown!r}; "
            f"it allows: {', '.join(self.services)}"
        )

    def scope(self) -> str:
        """The homelabs and services, as a log line or a person reads them."""
        services = "every service" if EVERY_SERVICE in self.services else ", ".join(self.services)
        return f"homelabs {', '.join(self.homelabs)}; services {services}"


def certificate_payload(certificate: Certificate) -> str:
    """The base64url payload the operator signs for ``certificate``."""
    claims: dict[str, Any] = {
        "e": certificate.expires_at,
        "i": certificate.id,
        "k": certificate.kind,
        "n": certificate.name,
        "p": b64url.encode(certificate.public_key),
    }
    if certificate.kind == "client":
        claims["h"] = list(certificate.homelabs)
        claims["s"] = list(certificate.services)
    return b64url.encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())


def check_scope(kind: str, name: str, homelabs: tuple[str, ...], services: tuple[str, ...]) -> None:
    """ValueError unless a certificate of ``kind`` may name these; says which entry is wrong."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if not is_valid_name(name):
        raise ValueError(f"name {name!r} is not valid: use {NAME_RULE}")
    if kind == "homelab":
        if homelabs or services:
            raise ValueError("a homelab's certificate names no homelabs or services")
        return
    if not homelabs or not services:
        raise ValueError("a client's certificate names at least one homelab and one service")
    if len(homelabs) > MAX_SCOPE_ENTRIES or len(services) > MAX_SCOPE_ENTRIES:
        raise ValueError(f"a certificate names at most {MAX_SCOPE_ENTRIES} homelabs and services")
    for homelab in homelabs:
        if not is_valid_name(homelab):
            raise ValueError(f"homelab {homelab!r} is not a valid name: use {NAME_RULE}")
    for service in services:
        if service != EVERY_SERVICE and not is_valid_label(service):
            raise ValueError(f"service {service!r} is not a valid label: use {NAME_RULE} or '*'")


@dataclass(frozen=True)
class SignedCertificate:
    """A certificate's text split into what was signed, the claims and the signature."""

    signed_part: str
    certificate: Certificate
    signature: bytes


def parse_certificate(text: object) -> SignedCertificate:
    """The parts of a certificate's text; IdentityError if it is not one (unverified yet)."""
    if not isinstance(text, str) or not text:
        raise IdentityError("no certificate was given")
    if len(text) > MAX_CERTIFICATE_LENGTH or not text.isascii():
        raise IdentityError(f"the certificate is not ASCII of at most {MAX_CERTIFICATE_LENGTH}")
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != CERTIFICATE_VERSION:
        raise IdentityError(f"the certificate is not a {CERTIFICATE_VERSION}.<payload>.<signature>")
    try:
        payload = b64url.decode(parts[1], "the certificate's payload")
        signature = b64url.decode(parts[2], "the certificate's signature", SIGNATURE_LENGTH)
        claims = json.loads(payload)
        certificate = _certificate_from_claims(claims)
    except (ValueError, TypeError) as exc:  # B64Error, JSON, UTF-8: all ValueErrors
        raise IdentityError(f"the certificate is not valid ({exc})") from None
    if certificate_payload(certificate) != parts[1]:
        raise IdentityError("the certificate's payload is not in its canonical form")
    return SignedCertificate(f"{parts[0]}.{parts[1]}", certificate, signature)


def _certificate_from_claims(claims: Any) -> Certificate:
    if not isinstance(claims, dict):
        raise ValueError("the payload is not an object")
    kind, name, ident, key, expires_at = (claims.get(k) for k in ("k", "n", "i", "p", "e"))
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise ValueError("its id is not 16 hex digits")
    if type(expires_at) is not int:
        raise ValueError("its expiry is not a whole number")
    if not isinstance(key, str):
        raise ValueError("it holds no public key")
    homelabs, services = claims.get("h", []), claims.get("s", [])
    if not isinstance(homelabs, list) or not isinstance(services, list):
        raise ValueError("its homelabs and services are not lists")
    if not all(isinstance(entry, str) for entry in homelabs + services):
        raise ValueError("its homelabs and services are not names")
    check_scope(str(kind), str(name), tuple(homelabs), tuple(services))
    return Certificate(
        kind=str(kind),
        name=str(name),
        id=ident,
        public_key=b64url.decode(key, "its public key", PUBLIC_KEY_LENGTH),
        expires_at=expires_at,
        homelabs=tuple(homelabs),
        services=tuple(services),
    )


def sdp_fingerprints(sdp: str) -> tuple[str, ...]:
    """Every DTLS fingerprint of an SDP, ``"sha-256 AB:CD:..."``, sorted, each once.

    Both sides build a statement from this list; aiortc and browsers check the certificate
    against every fingerprint of a supported algorithm, so all of them are signed.
    """
    found = {
        f"{match.group(1).lower()} {match.group(2).upper()}"
        for line in sdp.splitlines()
        if (match := _FINGERPRINT.fullmatch(line))
    }
    return tuple(sorted(found))


def offer_statement(homelab: str, at: int, offer_sdp: str) -> bytes:
    """What a client signs: this offer, to this homelab, at this time."""
    lines = ["homelab-p2p offer v1", f"to {homelab}", f"at {at}"]
    lines += [f"fingerprint {fp}" for fp in sdp_fingerprints(offer_sdp)]
    return ("\n".join(lines) + "\n").encode()


def answer_statement(client_id: str, offer_sdp: str, answer_sdp: str) -> bytes:
    """What a homelab signs: this answer, to this client's offer."""
    lines = ["homelab-p2p answer v1", f"client {client_id}"]
    lines += [f"offer-fingerprint {fp}" for fp in sdp_fingerprints(offer_sdp)]
    lines += [f"answer-fingerprint {fp}" for fp in sdp_fingerprints(answer_sdp)]
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Proof:
    """``"identity"`` of an offer or answer: a certificate and a signature (and, in an offer,
    the time it was signed)."""

    certificate: str
    signature: str
    at: int = 0

    def to_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"certificate": self.certificate, "proof": self.signature}
        if self.at:
            fields["at"] = self.at
        return fields


def parse_proof(value: object, *, offer: bool) -> Proof:
    """The ``identity`` field of a signal; IdentityError if it is missing or malformed."""
    if value is None:
        raise IdentityError('it carries no credential (no "identity" field)')
    if not isinstance(value, dict):
        raise IdentityError('its "identity" field is not an object')
    certificate, signature, at = value.get("certificate"), value.get("proof"), value.get("at", 0)
    if not isinstance(certificate, str) or not isinstance(signature, str):
        raise IdentityError('its "identity" field needs a certificate and a proof (strings)')
    if offer and (type(at) is not int or at <= 0):
        raise IdentityError('its "identity" field needs "at", the time it was signed')
    if len(signature) != SIGNATURE_LENGTH:
        raise IdentityError("its proof is not an Ed25519 signature")
    return Proof(certificate, signature, at if offer else 0)
