"""STUN and TURN servers as users write them: ``{urls, username, credential}`` entries."""

import re
from dataclasses import dataclass
from typing import Any

ORIGINAL_DEFAULT = "stun:stun.l.google.com:19302"
"""The original system's default, used only when nothing at all is configured."""

_URI = re.compile(
    r"(?P<scheme>stun|stuns|turn|turns):(?P<host>\[[0-9a-fA-F:.]+\]|[^?:\[\]]+)"
    r"(:(?P<port>\d{1,5}))?(\?transport=(?P<transport>udp|tcp))?"
)


@dataclass(frozen=True)
class IceServer:
    url: str
    scheme: str
    host: str
    port: int
    transport: str
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return self.scheme in ("turn", "turns")

    def describe(self) -> str:
        return self.url.split("?")[0]


def parse_ice_url(
    url: str, username: str | None = None, credential: str | None = None
) -> IceServer:
    """One ``stun:``/``turn:`` URL; ValueError says what is wrong with it."""
    match = _URI.fullmatch(url.strip())
    if match is None:
        raise ValueError(
            f"{url!r} is not a STUN or TURN URL "
            "(stun:HOST[:PORT] or turn:HOST[:PORT][?transport=udp|tcp])"
        )
    scheme = match.group("scheme")
    port = int(match.group("port") or (5349 if scheme in ("stuns", "turns") else 3478))
    if not 0 < port <= 65535:
        raise ValueError(f"{url!r} has port {port}, outside 1-65535")
    transport = match.group("transport") or ("tcp" if scheme == "turns" else "udp")
    if scheme.startswith("stun") and match.group("transport"):
        raise ValueError(f"{url!r}: only TURN URLs take ?transport=")
    if scheme == "stuns":
        raise ValueError(f"{url!r}: stuns (STUN over TLS) is not supported; use stun:")
    if scheme == "turns" and transport != "tcp":
        raise ValueError(f"{url!r}: turns runs over TCP only")
    if scheme.startswith("turn") and (not username or not credential):
        raise ValueError(f"{url!r} is a TURN server: it needs a username and a credential")
    return IceServer(
        url=url.strip(),
        scheme=scheme,
        host=match.group("host").strip("[]"),
        port=port,
        transport=transport,
        username=username if scheme.startswith("turn") else None,
        credential=credential if scheme.startswith("turn") else None,
    )


def parse_ice_servers(value: Any, key: str = "ice_servers") -> tuple[IceServer, ...]:
    """``[{urls: "stun:..." | [...], username: ..., credential: ...}, ...]``."""
    if not isinstance(value, list):
        raise ValueError(f"{key}: must be a list of {{urls, username, credential}} entries")
    servers: list[IceServer] = []
    for position, entry in enumerate(value):
        where = f"{key}[{position}]"
        if not isinstance(entry, dict) or "urls" not in entry:
            raise ValueError(f"{where}: must be a mapping with 'urls'")
        unknown = set(entry) - {"urls", "username", "credential"}
        if unknown:
            raise ValueError(
                f"{where}: unknown key {sorted(unknown)[0]!r} (use urls, username, credential)"
            )
        urls = entry["urls"] if isinstance(entry["urls"], list) else [entry["urls"]]
        for url in urls:
            if not isinstance(url, str):
                raise ValueError(f"{where}.urls: {url!r} is not a string")
            username, credential = entry.get("username"), entry.get("credential")
            try:
                servers.append(
                    parse_ice_url(url, username and str(username), credential and str(credential))
                )
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
    return tuple(servers)
