"""What hostile clients send, and how a test sees what the daemon holds.

The offers here are written by hand: they parse, carry ICE credentials and a fingerprint,
and name no candidate, so a homelab can answer them but no connection can ever complete
(unless candidates follow). ``sockets_of`` reads a process's sockets from /proc, in the
process's own network namespace.
"""

import asyncio
import json
import os
import secrets
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from homelab_p2p.authenticate import offer_signal
from lab import credential, token
from lab.netns import Namespace
from p2p_runtime.identity import Credential


def offer_sdp(candidates: list[str] | None = None) -> str:
    """An offer aiortc takes, with fresh ICE credentials and ``candidates`` (lines' values)."""
    fingerprint = ":".join(f"{byte:02X}" for byte in secrets.token_bytes(32))
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(2**31)} 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=sctp-port:5000",
        "a=max-message-size:65536",
        f"a=ice-ufrag:{secrets.token_hex(4)}",
        f"a=ice-pwd:{secrets.token_hex(12)}",
        f"a=fingerprint:sha-256 {fingerprint}",
        "a=setup:actpass",
        *(f"a=candidate:{candidate}" for candidate in candidates or []),
    ]
    return "\r\n".join(lines) + "\r\n"


@cache
def hostile_client() -> Credential:
    """An authorized client that misbehaves: the homelab's limits are what stop it."""
    return credential("client", "hostile")


def offer(sdp: str | None = None, target: str = "laptop") -> dict[str, Any]:
    """An offer signed with ``hostile_client()``'s credential (so only its SDP is hostile)."""
    return offer_signal(hostile_client(), target, offer_sdp() if sdp is None else sdp)


async def open_client(
    namespace: Namespace, host: str, port: int = 8765, name: str = "hostile"
) -> ClientConnection:
    """A client's signaling connection from ``namespace``, with a client token for ``name``."""
    sock = namespace.socket_connected(host, port)
    return await connect(
        f"ws://{host}:{port}/prod?token={token('client', name)}",
        sock=sock,
        open_timeout=10,
        ping_interval=None,
        compression=None,
    )


async def signal(ws: ClientConnection, data: Any, to: str = "laptop") -> None:
    await ws.send(json.dumps({"action": "sendSignal", "to": to, "data": data}))


async def next_signal(ws: ClientConnection, within: float = 20) -> dict[str, Any]:
    """The ``data`` of the next signal relayed to ``ws`` (errors of signaling included)."""
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message.get("action") == "sendSignal":
                data = message["data"]
                return data if isinstance(data, dict) else {"type": "?", "raw": data}
            if "error" in message:
                return {"type": "signaling-error", **message}


def sockets_of(pid: int, kind: str) -> list[tuple[str, str]]:
    """(local, remote) hex addresses of ``pid``'s ``kind`` ("udp" or "tcp") sockets."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in (f"/proc/{pid}/net/{kind}", f"/proc/{pid}/net/{kind}6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((fields[1], fields[2]))
    return found


def tcp_peers_on_port(pid: int, port: int) -> int:
    """How many of ``pid``'s TCP connections go to ``port`` (a service's connections)."""
    return sum(1 for _, remote in sockets_of(pid, "tcp") if remote.endswith(f":{port:04X}"))


async def eventually(condition: Callable[[], bool], within: float = 10) -> None:
    """Wait until ``condition()`` holds (checked every 50 ms); TimeoutError after ``within``."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - what changes is in another process
            await asyncio.sleep(0.05)
