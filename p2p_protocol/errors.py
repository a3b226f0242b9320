"""The codes a homelab refuses with: in its error signals and its data channels' last words.

The signaling service's own codes (``backend_unreachable``...) are ``messages.ErrorCode``.
Both kinds go to people with a message beside them; programs look at the code only.
"""

from enum import StrEnum


class PeerRefusal(StrEnum):
    """``{"type": "error", "code": ...}``: why the homelab refused a peer's offer or dropped it."""

    BUSY = "busy"
    """Every max_peers place is taken by a connected peer, or the place went to a newer offer."""
    BAD_OFFER = "bad_offer"
    """An SDP the homelab cannot use."""
    NO_PORTS = "no_ports"
    """ice_port_range has no free port."""
    RATE_LIMITED = "rate_limited"
    """More offers a minute than max_offers_per_minute."""
    TIMEOUT = "timeout"
    """Not connected within peer_connect_timeout."""
    PROTOCOL_VIOLATION = "protocol_violation"
    """The peer broke the rules of ICE, DTLS or SCTP (p2p_webrtc's watch)."""
    UNAUTHORIZED = "unauthorized"
    """The offer's credential or proof is missing, not the operator's, expired, revoked, not
    for this homelab, or not over this offer; or the credential was revoked while connected."""


class ChannelRefusal(StrEnum):
    """``{"error": ..., "message": ...}``, the last message on a data channel the homelab closes."""

    UNKNOWN_SERVICE = "unknown_service"
    SERVICE_UNAVAILABLE = "service_unavailable"
    BAD_REQUEST = "bad_request"
    FORBIDDEN = "forbidden"
    """The client's credential does not list the service."""
    TOO_MANY_CHANNELS = "too_many_channels"
    OVERFLOW = "overflow"
