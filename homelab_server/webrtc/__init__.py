"""The project's seam to aiortc: everything that reaches into aiortc's or aioice's internals.

``install(policy)`` puts two subclasses in place, once per process, before any peer
connection exists: ``ice.BridgeIceConnection`` (port range, every STUN/TURN server) and
``sctp.FlowControlledSctpTransport`` (flow control both ways). Both extend aiortc 1.16.0 /
aioice 0.13.0, the exact versions pyproject.toml pins; ``install`` refuses any other.
Everything outside this package uses aiortc's public API only.
"""

import importlib.metadata
import logging
from typing import Any

import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from homelab_server.webrtc.ice import BridgeIceConnection, IcePolicy, PortRangeExhausted, set_policy
from homelab_server.webrtc.sctp import FlowControlledSctpTransport

__all__ = [
    "IcePolicy",
    "PortRangeExhausted",
    "install",
    "new_peer_connection",
    "receive_window",
    "selected_pair",
]

log = logging.getLogger("homelab_server.webrtc")
PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0"}


class UnsupportedAiortc(RuntimeError):
    """aiortc or aioice is not the version this seam was written for."""


def install(policy: IcePolicy) -> None:
    for package, version in PINNED.items():
        found = importlib.metadata.version(package)
        if found != version:
            raise UnsupportedAiortc(
                f"{package} {found} is installed, but homelab-p2p-bridge extends {package} "
                f"{version} (reinstall the project to get it)"
            )
    set_policy(policy)
    # aiortc refers to these two classes through module globals; these are the seams.
    aiortc.rtcicetransport.Connection = BridgeIceConnection  # type: ignore[attr-defined]
    aiortc.rtcpeerconnection.RTCSctpTransport = FlowControlledSctpTransport  # type: ignore[attr-defined]
    # Never aiortc's implicit public STUN server: only what the policy names is used.
    gatherer = aiortc.rtcicetransport.RTCIceGatherer
    gatherer.getDefaultIceServers = staticmethod(_no_default_servers)  # type: ignore[method-assign]


def _no_default_servers() -> list[RTCIceServer]:
    return []


def new_peer_connection(policy: IcePolicy, relay_only: bool = False) -> RTCPeerConnection:
    servers = [
        RTCIceServer(urls=server.url, username=server.username, credential=server.credential)
        for server in policy.servers
    ]
    transport_policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, iceTransportPolicy=transport_policy)
    )


def _ice_connection(pc: RTCPeerConnection) -> Any:
    sctp = pc.sctp
    if sctp is None:
        return None
    return sctp.transport.transport._connection


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str, str] | None:
    """(pair type, local candidate type, remote candidate type) of the pair in use.

    The pair type is the most indirect of the two: relay if either end is relayed, else
    srflx if either is server- or peer-reflexive, else host.
    """
    connection = _ice_connection(pc)
    pair = connection._nominated.get(1) if connection is not None else None
    if pair is None:
        return None
    local, remote = pair.local_candidate.type, pair.remote_candidate.type
    kinds = {local, remote}
    kind = "relay" if "relay" in kinds else "srflx" if kinds & {"srflx", "prflx"} else "host"
    return kind, local, remote


def receive_window(channel: Any) -> FlowControlledSctpTransport | None:
    """The flow-controlled SCTP transport under a data channel (None before install)."""
    transport = getattr(channel, "transport", None)
    return transport if isinstance(transport, FlowControlledSctpTransport) else None
