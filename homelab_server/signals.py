"""The WebRTC signals carried in ``sendSignal``'s ``data`` (docs/protocol.md).

``{"type": "offer"|"answer", "sdp": ...}``, ``{"type": "candidate", "candidate": ...}``,
``{"type": "bye"}``, ``{"type": "ping"}`` (``homelab-p2p doctor`` asks whether the homelab
answers; it replies ``{"type": "pong", "peers": N, "max_peers": M}``), and from the homelab
``{"type": "error", "code": ..., "message": ...}``.
A JSON string holding such an object is accepted too (the original browser library sent
that).
"""

import json
from dataclasses import dataclass
from typing import Any

TYPES = ("offer", "answer", "candidate", "bye", "error", "ping", "pong")
MAX_SDP = 60_000


class BadSignal(ValueError):
    """``data`` is not a signal; str() says why."""


@dataclass(frozen=True)
class Signal:
    type: str
    sdp: str = ""
    candidate: dict[str, Any] | None = None
    code: str = ""
    message: str = ""


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
        return Signal(kind, sdp=sdp)
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


def offer(sdp: str) -> dict[str, str]:
    return {"type": "offer", "sdp": sdp}


def answer(sdp: str) -> dict[str, str]:
    return {"type": "answer", "sdp": sdp}


def pong(peers: int, max_peers: int) -> dict[str, Any]:
    return {"type": "pong", "peers": peers, "max_peers": max_peers}


def error(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}
