"""The signaling wire protocol: what clients send, what they get back, and the errors.

Plain functions over JSON values, no I/O: the handler feeds them message bodies and posts
what they return. See docs/protocol.md for the protocol as a client author reads it.
"""

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from p2p_protocol.names import NAME_RULE, is_valid_name

ROUTE_KEYS = ("sendSignal", "register", "ping")
"""Routes selected by ``$request.body.action``; anything else goes to ``$default``."""

ECHO_TARGET = "me"
IDENTIFY = "identify"
MAX_DATA_BYTES = 65536
"""Largest ``data`` (as JSON) relayed; a relayed envelope then fits API Gateway's 128 KiB."""
MAX_TARGET_LENGTH = 256
MAX_TICKET_LENGTH = 64
_SIGNAL_TYPE = re.compile(r"[A-Za-z][A-Za-z_-]{0,31}")
MAX_NESTING = 32
"""Deepest JSON nesting accepted; WebRTC signals nest two or three levels."""
LINK_SEND_RATE = 90.0
LINK_SEND_BURST = 100
"""The project's own signaling links send at most LINK_SEND_RATE messages a second, in
bursts of LINK_SEND_BURST: below the local gateway's default per-connection limit (100 a
second, bursts of 200), past which it would refuse them. A homelab answering many clients
at once is paced, not refused."""

BACKEND_UNREACHABLE_MESSAGE = "The target (homelab_server) is not currently connected"
INTERNAL_ERROR_MESSAGE = "Internal server error"


class ErrorCode(StrEnum):
    """``{"error": CODE, "message": TEXT}``: why the signaling service refused a message."""

    BACKEND_UNREACHABLE = "backend_unreachable"
    INVALID_JSON = "invalid_json"
    UNKNOWN_ACTION = "unknown_action"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMITED = "rate_limited"


def error_code(reply: dict[str, Any]) -> ErrorCode | None:
    """The code of an error reply; None when it has none this protocol knows.

    API Gateway's reply for a failed function has no code at all (see ``is_internal_error``).
    """
    code = reply.get("error")
    if not isinstance(code, str):
        return None
    try:
        return ErrorCode(code)
    except ValueError:
        return None


class BadMessage(Exception):
    """A client message the handler refuses; becomes an error object for the sender."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SendSignal:
    to: str
    data: Any
    ticket: str | None = None
    """A homelab's reply ticket for ``to`` (the one signaling gave it with that client's signal)."""


@dataclass(frozen=True)
class Register:
    name: str
    token: str | None


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON; lone surrogates (valid JSON escapes, invalid UTF-8) stay escaped.

    NaN and infinities raise ValueError: JSON has no such numbers, so none may go out.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def error_reply(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code.value, "message": message, **extra}


def backend_unreachable(target: str) -> dict[str, Any]:
    return error_reply(ErrorCode.BACKEND_UNREACHABLE, BACKEND_UNREACHABLE_MESSAGE, target=target)


def internal_error_reply(connection_id: str, request_id: str) -> dict[str, Any]:
    """What API Gateway sends a client whose message made the function fail: no code."""
    return {
        "message": INTERNAL_ERROR_MESSAGE,
        "connectionId": connection_id,
        "requestId": request_id,
    }


def is_internal_error(message: dict[str, Any]) -> bool:
    return message.get("message") == INTERNAL_ERROR_MESSAGE


def relay_envelope(sender: str, to: str, data: Any, ticket: str | None = None) -> dict[str, Any]:
    """What the target of ``sendSignal`` receives (and what an echo returns); a homelab also
    gets the ``ticket`` it needs to answer the sender."""
    envelope = {"action": "sendSignal", "from": sender, "to": to, "data": data}
    if ticket is not None:
        envelope["ticket"] = ticket
    return envelope


def identify_reply(connection_id: str) -> dict[str, Any]:
    return {"action": "connected", "from": connection_id, "to": ECHO_TARGET, "data": connection_id}


def registered_reply(name: str, connection_id: str) -> dict[str, Any]:
    return {"action": "registered", "name": name, "connectionId": connection_id}


def pong_reply(connection_id: str) -> dict[str, Any]:
    return {"action": "pong", "connectionId": connection_id}


def _nesting_depth(value: Any) -> int:
    """How many arrays/objects deep ``value`` goes, walked without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def select_route(body: str | bytes | None) -> str:
    """API Gateway's route selection on ``$request.body.action``."""
    if not isinstance(body, str):
        return "$default"
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return "$default"
    action = message.get("action") if isinstance(message, dict) else None
    return action if action in ROUTE_KEYS else "$default"


def parse_body(body: object, is_base64: bool = False) -> dict[str, Any]:
    """The JSON object in a message body, or BadMessage saying why there is none."""
    if is_base64 or isinstance(body, bytes):
        raise BadMessage(
            ErrorCode.BAD_REQUEST, "Binary frames are not supported: send JSON in text frames"
        )
    if not isinstance(body, str) or not body.strip():
        raise BadMessage(ErrorCode.INVALID_JSON, "Unknown message format: the message is empty")
    try:
        message = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError as exc:
        raise BadMessage(
            ErrorCode.INVALID_JSON, f"Unknown message format: the message is not JSON ({exc})"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    if _nesting_depth(message) > MAX_NESTING:
        raise _too_deep()
    if not isinstance(message, dict):
        raise BadMessage(
            ErrorCode.BAD_REQUEST,
            f"Unknown message format: expected a JSON object, got {type(message).__name__}",
        )
    return message


def _refuse_constant(text: str) -> Any:
    """Python's json reads NaN, Infinity and -Infinity; JSON itself has no such numbers."""
    raise BadMessage(ErrorCode.BAD_REQUEST, f"The message holds {text}: JSON has no such numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadMessage(
            ErrorCode.BAD_REQUEST,
            f"The message holds {text[:32]}, which overflows to infinity: JSON has no such numbers",
        )
    return value


def _too_deep() -> BadMessage:
    return BadMessage(ErrorCode.BAD_REQUEST, f"The message nests deeper than {MAX_NESTING} levels")


def unknown_action(message: dict[str, Any]) -> BadMessage:
    """The error for a JSON object that matched no route."""
    action = message.get("action")
    routes = ", ".join(ROUTE_KEYS)
    if action is None:
        return BadMessage(
            ErrorCode.BAD_REQUEST, f'Unknown message format: no "action" (use one of {routes})'
        )
    shown = action[:64] if isinstance(action, str) else json.dumps(action)[:64]
    return BadMessage(
        ErrorCode.UNKNOWN_ACTION, f"Unknown message format: action {shown!r} is not one of {routes}"
    )


def _string_field(message: dict[str, Any], field: str, max_length: int) -> str:
    value = message.get(field)
    if not isinstance(value, str) or not value:
        raise BadMessage(ErrorCode.BAD_REQUEST, f'"{field}" must be a non-empty string')
    if len(value) > max_length:
        raise BadMessage(ErrorCode.BAD_REQUEST, f'"{field}" is longer than {max_length} characters')
    return value


def parse_send_signal(message: dict[str, Any]) -> SendSignal:
    to = _string_field(message, "to", MAX_TARGET_LENGTH)
    if "data" not in message:
        raise BadMessage(ErrorCode.BAD_REQUEST, '"data" is missing')
    data = message["data"]
    size = len(encode(data))
    if size > MAX_DATA_BYTES:
        raise BadMessage(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f'"data" is {size} bytes as JSON; at most {MAX_DATA_BYTES} are relayed',
        )
    ticket = message.get("ticket")
    if ticket is not None and (not isinstance(ticket, str) or len(ticket) > MAX_TICKET_LENGTH):
        raise BadMessage(
            ErrorCode.BAD_REQUEST, f'"ticket" must be a string of at most {MAX_TICKET_LENGTH}'
        )
    return SendSignal(to=to, data=data, ticket=ticket)


def parse_register(message: dict[str, Any]) -> Register:
    name = message.get("name")
    if not is_valid_name(name):
        raise BadMessage(ErrorCode.BAD_REQUEST, f'"name" must be {NAME_RULE}')
    assert isinstance(name, str)
    token = message.get("token")
    if token is not None and not isinstance(token, str):
        raise BadMessage(ErrorCode.BAD_REQUEST, '"token" must be a string')
    return Register(name=name, token=token)


def describe_data(data: Any) -> str:
    """A short word for logs: the WebRTC signal type (``offer``...) when there is one."""
    if isinstance(data, str) and data.startswith("{"):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            return "message"
    kind = data.get("type") if isinstance(data, dict) else None
    # Only word-like types reach the log: a client cannot split or forge log lines.
    return kind if isinstance(kind, str) and _SIGNAL_TYPE.fullmatch(kind) else "message"
