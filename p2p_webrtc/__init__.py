"""The project's seam to aiortc: everything that reaches into aiortc's or aioice's internals.

``install(policy, data_path)`` (installation.py) puts subclasses in place before any peer
connection exists, and returns them as an ``Installation``: ``ice.BridgeIceConnection``
(port range, every STUN/TURN server) and ``sctp.FlowControlledSctpTransport`` (flow
control both ways) always, and with the fast data path the classes of ``fastpath`` (see
its docstring). All of them extend aiortc 1.16.0 / aioice 0.13.0, the exact versions
pyproject.toml pins. The first two override a few methods and go in on any version; the
fast path replaces much more (and uses pyOpenSSL 26.4.0's internals), so on any other
version it is not even imported: it stays off with one warning line and aiortc's standard
path runs. Everything outside this package uses aiortc's public API only.
"""

from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from p2p_webrtc.datapath import DataPathOptions
from p2p_webrtc.ice import IcePolicy, PortRangeExhausted
from p2p_webrtc.installation import Installation, install
from p2p_webrtc.sctp import FlowControlledSctpTransport

__all__ = [
    "DataPathOptions",
    "IcePolicy",
    "Installation",
    "PortRangeExhausted",
    "install",
    "new_peer_connection",
    "queued_messages",
    "receive_window",
    "selected_pair",
    "watch_peer",
    "without_relay_candidates",
]


def new_peer_connection(
    policy: IcePolicy, relay_only: bool = False, direct_only: bool = False
) -> RTCPeerConnection:
    """A peer connection using ``policy``'s servers; ``direct_only`` leaves the TURN servers
    out, so that it gathers no relayed candidate (``ice.BridgeIceConnection``)."""
    chosen = policy.stun_servers if direct_only else policy.servers
    servers = [
        RTCIceServer(urls=server.url, username=server.username, credential=server.credential)
        for server in chosen
    ]
    transport_policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, iceTransportPolicy=transport_policy)
    )


def without_relay_candidates(sdp: str) -> str:
    """``sdp`` without its relayed candidates (``a=candidate:... typ relay``)."""
    lines = sdp.split("\r\n")
    return "\r\n".join(
        line for line in lines if not (line.startswith("a=candidate:") and " typ relay" in line)
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


def traffic(pc: RTCPeerConnection) -> tuple[int, int]:
    """(bytes sent, bytes received) by the connection's DTLS transport: every channel's data
    with its SCTP and DTLS overhead (aiortc's own counters; the fast path keeps them too)."""
    sctp = pc.sctp
    if sctp is None:
        return 0, 0
    report = sctp.transport._get_stats()
    sent = sum(getattr(stats, "bytesSent", 0) or 0 for stats in report.values())
    received = sum(getattr(stats, "bytesReceived", 0) or 0 for stats in report.values())
    return sent, received


def round_trip(pc: RTCPeerConnection) -> float | None:
    """SCTP's smoothed round trip in seconds (RFC 9260's SRTT); None before a measurement."""
    srtt = getattr(pc.sctp, "_srtt", None)
    return float(srtt) if isinstance(srtt, int | float) else None


def receive_window(channel: Any) -> FlowControlledSctpTransport | None:
    """The flow-controlled SCTP transport under a data channel (None before install)."""
    transport = getattr(channel, "transport", None)
    return transport if isinstance(transport, FlowControlledSctpTransport) else None


def queued_messages(channel: Any) -> int:
    """Messages waiting to be sent on ``channel``'s peer connection (all its channels)."""
    transport = receive_window(channel)
    return len(transport._data_channel_queue) if transport is not None else 0


def watch_peer(
    pc: RTCPeerConnection, label: str, on_violation: Callable[[str], None] | None = None
) -> None:
    """Names the peer at the other end of ``pc`` in the SCTP layer's log lines, and calls
    ``on_violation(why)`` when its SCTP packets break a limit no RFC sender reaches."""
    if isinstance(pc.sctp, FlowControlledSctpTransport):
        pc.sctp.peer_label = label
        if on_violation is not None:
            pc.sctp.on("violation", on_violation)
