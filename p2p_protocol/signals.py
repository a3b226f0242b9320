"""The WebRTC signals carried in ``sendSignal``'s ``data`` (docs/protocol.md).

``{"type": "offer"|"answer", "sdp": ..., "identity": ...}`` (the sender's certificate and
proof, p2p_protocol/identity.py), ``{"type": "candidate", "candidate": ...}``,
``{"type": "bye"}``, ``{"type": "ping"}`` (``homelab-p2p doctor`` asks whether the homelab
answers; it replies ``{"type": "pong", "peers": N, "max_peers": M}``), and from the homelab
``{"type": "error", "code": ..., "message": ...}``.
A JSON string holding such an object is accepted too (the original browser library sent
that).
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

TYPES = ("offer", "answer", "candidate", "bye", "error", "ping", "pong")
MAX_SDP = 60_000
MAX_CANDIDATES = 32
"""Remote ICE candidates per peer connection, in the offer and trickled together: each one
is paired with every local candidate and checked, so the homelab sends STUN checks to it."""


class BadSignal(ValueError):
    """``data`` is not a signal; str() says why."""


@dataclass(frozen=True)
class Signal:
    type: str
    sdp: str = ""
    candidate: dict[str, Any] | None = None
    code: str = ""
    message: str = ""
    identity: object = None
    """An offer's or answer's ``identity`` (p2p_protocol.identity.parse_proof reads it)."""


def parse_or_ignore(sender: str, data: Any, log: logging.Logger) -> Signal | None:
    """The signal ``sender`` relayed, or None after one warning: a bad signal ends nothing."""
    try:
        return parse_signal(data)
    except BadSignal as exc:
        log.warning("Ignored a signal from %s: %s", sender, exc)
        return None


def parse_signal(data: Any) -> Signal:
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise BadSignal("data is a string that is not JSON") from None
    if not isinstance(data, dict):
        raise BadSignal(f"data is a {type(data).__name__}, not a signal object")
    kind = data.get("type")
    if kind not in TYPES:
        raise BadSignal(f"type {str(kind)[:20]!r} is not one of {', '.join(TYPES)}")
    if kind in ("offer", "answer"):
        sdp = data.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0") or len(sdp) > MAX_SDP:
            raise BadSignal(
                f"an {kind} needs an SDP string (v=0...) of at most {MAX_SDP} characters"
            )
        return Signal(kind, sdp=sdp, identity=data.get("identity"))
    if kind == "candidate":
        candidate = data.get("candidate")
        if isinstance(candidate, str):
            candidate = {
                "candidate": candidate,
                "sdpMid": data.get("sdpMid"),
                "sdpMLineIndex": data.get("sdpMLineIndex"),
            }
        if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
            raise BadSignal("a candidate needs a candidate string")
        return Signal(kind, candidate=candidate)
    if kind == "error":
        return Signal(
            kind, code=str(data.get("code", "error")), message=str(data.get("message", ""))
        )
    return Signal(kind)


def offer(sdp: str, identity: dict[str, Any]) -> dict[str, Any]:
    return {"type": "offer", "sdp": sdp, "identity": identity}


def answer(sdp: str, identity: dict[str, Any]) -> dict[str, Any]:
    return {"type": "answer", "sdp": sdp, "identity": identity}


def pong(peers: int, max_peers: int) -> dict[str, Any]:
    return {"type": "pong", "peers": peers, "max_peers": max_peers}


def error(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}


def check_offer(sdp: str) -> int:
    """The number of ICE candidates in an offer that a homelab can answer; else BadSignal.

    The offer must have a data channel section (``m=application ... SCTP ...``), ICE
    credentials, a DTLS fingerprint and role: without them no connection can ever
    complete, and answering would only hold a place. aiortc checks the rest when it takes
    the offer.
    """
    lines = sdp.splitlines()
    if not any(_is_data_channel_section(line) for line in lines):
        raise BadSignal("the offer has no data channel section (m=application ... SCTP)")
    for attribute, what in (
        ("a=ice-ufrag:", "ICE credentials (a=ice-ufrag)"),
        ("a=ice-pwd:", "ICE credentials (a=ice-pwd)"),
        ("a=fingerprint:", "DTLS fingerprint (a=fingerprint)"),
        ("a=setup:", "DTLS role (a=setup)"),
    ):
        if not any(line.startswith(attribute) and len(line) > len(attribute) for line in lines):
            raise BadSignal(f"the offer has no {what}")
    candidates = sum(line.startswith("a=candidate:") for line in lines)
    if candidates > MAX_CANDIDATES:
        raise BadSignal(f"the offer has {candidates} ICE candidates; at most {MAX_CANDIDATES}")
    return candidates


def _is_data_channel_section(line: str) -> bool:
    """``m=application 9 UDP/DTLS/SCTP webrtc-datachannel`` (or the older DTLS/SCTP 5000)."""
    fields = line.split()
    return len(fields) >= 4 and fields[0] == "m=application" and "SCTP" in fields[2]
