"""Ed25519 for end-to-end identity: the operator's key, certificates, credentials and proofs.

The formats are ``p2p_protocol.identity``'s; this module signs and verifies them with
``cryptography``. A credential file (what ``homelab-p2p credential issue`` writes, 0600) is
JSON: ``certificate`` (hpc1...), ``key`` (the holder's Ed25519 private key, base64url of its
32-byte seed), ``operator`` (hpk1..., the public key that certifies the other side) and, for
a client, ``signaling_token`` (hp1..., what the signaling service admits).
"""

import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from p2p_protocol import b64url
from p2p_protocol.identity import (
    CERTIFICATE_VERSION,
    OPERATOR_KEY_VERSION,
    PUBLIC_KEY_LENGTH,
    Certificate,
    IdentityError,
    Proof,
    certificate_payload,
    check_scope,
    parse_certificate,
)

MAX_CREDENTIAL_FILE = 16_384


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, created so from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


# --- the operator -----------------------------------------------------------------------


def operator_public_text(key: Ed25519PublicKey) -> str:
    return f"{OPERATOR_KEY_VERSION}.{b64url.encode(_public_bytes(key))}"


def parse_operator_public(text: object) -> Ed25519PublicKey:
    """The operator's public key from its ``hpk1.<key>`` text."""
    if not isinstance(text, str) or not text.startswith(f"{OPERATOR_KEY_VERSION}."):
        raise IdentityError(
            f"the operator's public key is not an {OPERATOR_KEY_VERSION}.<key> text; "
            "`homelab-p2p credential operator-key --operator-key FILE` prints it"
        )
    raw = b64url.decode(
        text.removeprefix(f"{OPERATOR_KEY_VERSION}."),
        "the operator's public key",
        PUBLIC_KEY_LENGTH,
    )
    return Ed25519PublicKey.from_public_bytes(raw)


def new_operator_key(path: Path) -> Ed25519PrivateKey:
    """A new operator key, written to ``path`` (PEM, 0600)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem.decode("ascii"))
    return key


def load_operator_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise IdentityError(
            f"cannot read the operator key {path}: {exc.strerror or exc}; create one with "
            f"`homelab-p2p credential new-operator --out {path}`"
        ) from None
    except (ValueError, TypeError):
        raise IdentityError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} holds a key of another kind than Ed25519")
    return key


# --- certificates -----------------------------------------------------------------------


def issue_certificate(
    operator: Ed25519PrivateKey,
    holder: Ed25519PublicKey,
    kind: str,
    name: str,
    *,
    ttl_seconds: int,
    homelabs: tuple[str, ...] = (),
    services: tuple[str, ...] = (),
    now: float | None = None,
) -> str:
    check_scope(kind, name, homelabs, services)
    certificate = Certificate(
        kind=kind,
        name=name,
        id=secrets.token_hex(8),
        public_key=_public_bytes(holder),
        expires_at=int(time.time() if now is None else now) + ttl_seconds,
        homelabs=homelabs,
        services=services,
    )
    signed_part = f"{CERTIFICATE_VERSION}.{certificate_payload(certificate)}"
    return f"{signed_part}.{b64url.encode(operator.sign(signed_part.encode('ascii')))}"


def expiry_text(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def verify_certificate(
    operator: Ed25519PublicKey,
    text: object,
    kind: str,
    revoked: frozenset[str] = frozenset(),
    now: float | None = None,
) -> Certificate:
    """The certificate if the operator signed it for ``kind`` and it is current; else why not."""
    signed = parse_certificate(text)
    try:
        operator.verify(signed.signature, signed.signed_part.encode("ascii"))
    except InvalidSignature:
        raise IdentityError(
            "its certificate is not signed by this homelab's operator key (another operator, "
            "or altered)"
        ) from None
    certificate = signed.certificate
    if certificate.kind != kind:
        raise IdentityError(f"its certificate is a {certificate.kind}'s, not a {kind}'s")
    if certificate.expires_at <= (time.time() if now is None else now):
        raise IdentityError(
            f"the credential of {certificate.describe()} expired at "
            f"{expiry_text(certificate.expires_at)}; ask the operator for a new one"
        )
    if certificate.id in revoked:
        raise IdentityError(f"the credential of {certificate.describe()} was revoked")
    return certificate


def verify_signature(certificate: Certificate, statement: bytes, signature: str) -> None:
    """IdentityError unless the certificate's holder signed ``statement``."""
    try:
        raw = b64url.decode(signature, "the proof")
        Ed25519PublicKey.from_public_bytes(certificate.public_key).verify(raw, statement)
    except (ValueError, InvalidSignature):
        raise IdentityError(
            f"its proof is not {certificate.describe()}'s signature over this very SDP "
            "(altered on the way, or replayed into another session)"
        ) from None


# --- credentials ------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """What a client or a homelab holds: its certificate, its key, the operator's key."""

    certificate_text: str
    certificate: Certificate
    key: Ed25519PrivateKey
    operator: Ed25519PublicKey
    signaling_token: str = ""

    def sign(self, statement: bytes, at: int = 0) -> Proof:
        return Proof(self.certificate_text, b64url.encode(self.key.sign(statement)), at)

    def to_json(self) -> str:
        fields = {
            "certificate": self.certificate_text,
            "key": b64url.encode(_seed(self.key)),
            "operator": operator_public_text(self.operator),
        }
        if self.signaling_token:
            fields["signaling_token"] = self.signaling_token
        return json.dumps(fields, indent=2) + "\n"


def new_credential(
    operator: Ed25519PrivateKey,
    kind: str,
    name: str,
    *,
    ttl_seconds: int,
    homelabs: tuple[str, ...] = (),
    services: tuple[str, ...] = (),
    signaling_token: str = "",
    now: float | None = None,
) -> Credential:
    key = Ed25519PrivateKey.generate()
    text = issue_certificate(
        operator,
        key.public_key(),
        kind,
        name,
        ttl_seconds=ttl_seconds,
        homelabs=homelabs,
        services=services,
        now=now,
    )
    return Credential(
        text, parse_certificate(text).certificate, key, operator.public_key(), signaling_token
    )


def parse_credential(text: str, origin: str) -> Credential:
    """A credential from its JSON; IdentityError names ``origin`` and what is wrong."""
    try:
        fields = json.loads(text)
    except ValueError:
        raise IdentityError(f"{origin} is not a credential (not JSON)") from None
    if not isinstance(fields, dict) or not all(
        isinstance(fields.get(key), str) for key in ("certificate", "key", "operator")
    ):
        raise IdentityError(f"{origin} is not a credential (certificate, key, operator)")
    token = fields.get("signaling_token", "")
    if not isinstance(token, str):
        raise IdentityError(f"{origin}: its signaling_token is not a string")
    try:
        signed = parse_certificate(fields["certificate"])
        key = Ed25519PrivateKey.from_private_bytes(
            b64url.decode(fields["key"], "its key", PUBLIC_KEY_LENGTH)
        )
        operator = parse_operator_public(fields["operator"])
    except ValueError as exc:
        raise IdentityError(f"{origin} is not a usable credential: {exc}") from None
    if _public_bytes(key.public_key()) != signed.certificate.public_key:
        raise IdentityError(f"{origin}: its key does not belong to its certificate")
    return Credential(
        fields["certificate"],
        signed.certificate,
        key,
        operator,
        token if isinstance(token, str) else "",
    )


def load_credential(path: Path) -> Credential:
    try:
        with path.expanduser().open("rb") as file:
            raw = file.read(MAX_CREDENTIAL_FILE + 1)
    except OSError as exc:
        raise IdentityError(
            f"cannot read the credential file {path}: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_CREDENTIAL_FILE:
        raise IdentityError(f"the credential file {path} is larger than a credential")
    return parse_credential(raw.decode("utf-8", "replace"), f"the credential file {path}")
