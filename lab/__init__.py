"""The lab: network namespaces, a gateway process, daemons, Chromium, hostile peers; shared
by the tests and the benchmarks."""

import atexit
import dataclasses
import shutil
import tempfile
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2p_protocol.tokens import issue_token
from p2p_runtime.identity import Credential, new_credential, write_private

SECRET = b"test-secret-0123456789abcdef-0123456789"
"""The signing secret of every test gateway and handler."""
OPERATOR = Ed25519PrivateKey.generate()
"""The lab's operator key: it certifies every lab daemon and client of this process."""


def token(
    role: str = "client",
    name: str = "alice",
    ttl: int = 3600,
    now: float | None = None,
    homelabs: tuple[str, ...] = ("laptop",),
) -> str:
    """A token signed with SECRET (``now`` in the past makes an expired one); a client's
    reaches ``homelabs``."""
    return issue_token(
        SECRET, role, name, ttl, now=now, homelabs=homelabs if role == "client" else ()
    )


def credential(
    kind: str = "client",
    name: str = "alice",
    homelabs: tuple[str, ...] = ("laptop",),
    services: tuple[str, ...] = ("*",),
    ttl: int = 3600,
    now: float | None = None,
    operator: Ed25519PrivateKey = OPERATOR,
) -> Credential:
    """A credential the lab's operator issued (a client's reaches every service of ``laptop``)."""
    if kind == "homelab":
        homelabs, services = (), ()
    held = new_credential(
        operator, kind, name, ttl_seconds=ttl, homelabs=homelabs, services=services, now=now
    )
    signaling = issue_token(
        SECRET,
        kind,
        name,
        ttl,
        now=now,
        homelabs=homelabs,
        credential_id=held.certificate.id,
    )
    return dataclasses.replace(held, signaling_token=signaling)


@cache
def _credential_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="lab-credentials-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def credential_file(held: Credential, path: Path | None = None) -> Path:
    """``held`` written as ``homelab-p2p credential issue`` writes it (0600)."""
    if path is None:
        path = _credential_dir() / f"{held.certificate.kind}-{held.certificate.id}.json"
    write_private(path, held.to_json())
    return path


@cache
def default_client_file() -> Path:
    """The credential every lab client uses unless a test gives another."""
    return credential_file(credential("client", "e2e"))
