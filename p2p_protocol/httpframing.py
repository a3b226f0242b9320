"""HTTP over a data channel: the framing of ``http://`` services (docs/data-channels.md).

One request per data channel, whose label is the service's:

    client -> homelab   text   {"method": "POST", "path": "/api?x=1", "headers": [[name, value]]}
                        binary request body chunks (none for a body-less request)
                        text   {"end": true}
    homelab -> client   text   {"status": 200, "statusText": "OK", "headers": [[name, value], ...]}
                        binary response body chunks (16 KiB each at most)
                        text   {"end": true}

Either side may instead send text ``{"error": CODE, "message": TEXT}`` at any point; the
homelab closes the channel after the end or an error.

Version 2 adds WebSocket upgrades: the request head says ``"v": 2, "upgrade": "websocket"``
(then the end message, no body); the homelab answers ``"v": 2`` heads, ``status`` 101 when
the service accepted, and both sides then exchange WebSocket messages as binary pieces
(``websocket_pieces``: one kind byte, text or binary, with ``MORE`` set on every piece but
a message's last) until one sends ``{"close": CODE, "reason": TEXT}`` and closes. A version-1
homelab ignores the upgrade and answers a plain GET without ``"v"``: the client then knows
the homelab's bridge predates WebSockets. Plain functions, no I/O.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

END = json.dumps({"end": True})
MAX_HEAD_BYTES = 64 * 1024
FRAMING_VERSION = 2
WEBSOCKET = "websocket"
TEXT, BINARY, MORE = 0x01, 0x02, 0x80
"""The kind byte of a WebSocket piece: text or binary, MORE while the message continues."""
MAX_WEBSOCKET_MESSAGE = 1024 * 1024
"""Bytes of one WebSocket message, either way (a longer one closes the socket with 1009)."""
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_METHOD = re.compile(r"[A-Z]{1,16}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]*")
"""RFC 9110 field values: no control characters (tab allowed), no DEL."""
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")
_PATH = re.compile(r"/[\x21-\x7e]*")
"""Visible ASCII (clients percent-encode the rest); checked further by ``service_path``."""
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|00)", re.IGNORECASE)


class FramingError(ValueError):
    """A message that does not follow the framing; str() says how."""


class MessageTooLong(FramingError):
    """A WebSocket message longer than the assembler's limit (the socket closes with 1009)."""


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    headers: list[tuple[str, str]]
    content_length: int | None = None
    """The body's declared length (checked: one numeric Content-Length, no Transfer-Encoding)."""
    upgrade: str | None = None
    """``websocket`` when the client asks for one (version 2)."""


@dataclass(frozen=True)
class ResponseHead:
    status: int
    status_text: str
    headers: list[tuple[str, str]]
    version: int = 1
    """2 from a homelab that tunnels WebSockets; 1 (no ``"v"``) from an older one."""


def _json_object(text: str, what: str) -> dict[str, Any]:
    if len(text) > MAX_HEAD_BYTES:
        raise FramingError(f"the {what} is larger than {MAX_HEAD_BYTES} bytes")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise FramingError(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise FramingError(f"the {what} is not a JSON object")
    return value


def _headers(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise FramingError('"headers" must be a list of [name, value] pairs')
    headers = []
    for pair in value:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(part, str) for part in pair)
            or not _HEADER_NAME.fullmatch(pair[0])
            or not _HEADER_VALUE.fullmatch(pair[1])
        ):
            raise FramingError(f"header {pair!r} is not a [name, value] pair of valid strings")
        headers.append((pair[0], pair[1]))
    return headers


def parse_request_head(text: str) -> RequestHead:
    head = _json_object(text, "request head")
    method, path = head.get("method"), head.get("path", "/")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise FramingError('"method" must be an HTTP method in capitals, such as "GET"')
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise FramingError(
            '"path" must start with "/" and hold only visible ASCII characters '
            "(percent-encode the rest)"
        )
    headers = _headers(head.get("headers", []))
    upgrade = head.get("upgrade")
    if upgrade is not None and (upgrade != WEBSOCKET or method != "GET"):
        raise FramingError('"upgrade" can only be "websocket", on a GET')
    content_length = _content_length(headers)
    if upgrade is not None and (content_length or _has_transfer_encoding(headers)):
        raise FramingError("a WebSocket upgrade has no body")
    return RequestHead(method, path, headers, content_length, upgrade)


def _has_transfer_encoding(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "transfer-encoding" for name, _ in headers)


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    """The one Content-Length a request may declare; FramingError for anything ambiguous.

    Two lengths, a length beside Transfer-Encoding, or a length that is not a number could
    be read differently by the service than here: a request smuggled past this framing.
    """
    lengths = [value for name, value in headers if name.lower() == "content-length"]
    encodings = [value for name, value in headers if name.lower() == "transfer-encoding"]
    if len(lengths) > 1:
        raise FramingError("the request has more than one Content-Length header")
    if lengths and encodings:
        raise FramingError("the request has both Content-Length and Transfer-Encoding")
    if any(value.strip().lower() != "chunked" for value in encodings):
        raise FramingError('the only Transfer-Encoding a request may declare is "chunked"')
    if not lengths:
        return None
    if not _CONTENT_LENGTH.fullmatch(lengths[0].strip()):
        raise FramingError(f"Content-Length {lengths[0][:20]!r} is not a number of bytes")
    return int(lengths[0])


def service_path(path: str) -> str:
    """``path`` with its dot segments resolved (RFC 3986 section 5.2.4), query kept.

    FramingError when the path would climb above the service's root (and so out of its
    base path), or holds what services may read as a separator or a dot segment in
    disguise: a backslash, an encoded slash, backslash or NUL, a fragment.
    """
    target, question, query = path.partition("?")
    if "\\" in target or "#" in path:
        raise FramingError('"path" must not hold a backslash or "#"')
    if _ENCODED_SEPARATOR.search(target):
        raise FramingError('"path" must not hold an encoded "/", "\\" or NUL (%2F, %5C, %00)')
    resolved: list[str] = []
    segments = target.split("/")[1:]
    for position, segment in enumerate(segments):
        dots = segment.lower().replace("%2e", ".")
        if dots not in (".", ".."):
            resolved.append(segment)
            continue
        if dots == "..":
            if not resolved:
                raise FramingError('"path" climbs out of the service\'s base path ("..")')
            resolved.pop()
        if position == len(segments) - 1:
            resolved.append("")  # "/a/b/.." is "/a/": the trailing slash stays
    return "/" + "/".join(resolved) + question + query


def request_head(
    method: str, path: str, headers: list[tuple[str, str]], upgrade: str | None = None
) -> str:
    head: dict[str, Any] = {"method": method, "path": path, "headers": [list(h) for h in headers]}
    if upgrade is not None:
        head.update(v=FRAMING_VERSION, upgrade=upgrade)
    return json.dumps(head)


def parse_response_head(text: str) -> ResponseHead:
    head = _json_object(text, "response head")
    status = head.get("status")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise FramingError('"status" must be an HTTP status code')
    version = head.get("v", 1)
    if not isinstance(version, int) or version < 1:
        raise FramingError('"v" must be a framing version (a positive integer)')
    headers = _headers(head.get("headers", []))
    return ResponseHead(status, str(head.get("statusText", "")), headers, version)


def response_head(status: int, status_text: str, headers: list[tuple[str, str]]) -> str:
    return json.dumps(
        {
            "v": FRAMING_VERSION,
            "status": status,
            "statusText": status_text,
            "headers": [list(h) for h in headers],
        }
    )


def websocket_pieces(kind: int, data: bytes, piece_size: int) -> list[bytes]:
    """One WebSocket message (``kind`` TEXT or BINARY) as channel messages of at most
    ``piece_size`` bytes, kind byte included."""
    room = piece_size - 1
    chunks = [data[i : i + room] for i in range(0, len(data), room)] or [b""]
    last = len(chunks) - 1
    return [bytes([kind | (MORE if i < last else 0)]) + chunk for i, chunk in enumerate(chunks)]


class WebSocketAssembler:
    """Pieces back into messages; FramingError for a piece that does not fit, or a message
    longer than ``limit``."""

    def __init__(self, limit: int = MAX_WEBSOCKET_MESSAGE) -> None:
        self._limit = limit
        self._kind: int | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, piece: bytes) -> tuple[int, bytes] | None:
        """The message ``piece`` completes (kind, data), or None while it continues."""
        if not piece or piece[0] & ~MORE not in (TEXT, BINARY):
            raise FramingError("a WebSocket piece must start with its kind byte (1 or 2)")
        kind = piece[0] & ~MORE
        if self._kind is not None and kind != self._kind:
            raise FramingError("a WebSocket message changed its kind midway")
        self._size += len(piece) - 1
        if self._size > self._limit:
            raise MessageTooLong(f"a WebSocket message is longer than {self._limit} bytes")
        self._kind = kind
        self._parts.append(piece[1:])
        if piece[0] & MORE:
            return None
        data = b"".join(self._parts)
        self._kind, self._parts, self._size = None, [], 0
        return kind, data


def websocket_close(code: int, reason: str = "") -> str:
    return json.dumps({"close": code, "reason": reason[:123]})


def parse_websocket_close(text: str) -> tuple[int, str] | None:
    """The close ``text`` carries (code, reason), or None when it is not one."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("close"), int):
        return None
    code = message["close"]
    reason = message.get("reason", "")
    return (code if 1000 <= code <= 4999 else 1002), reason[:123] if isinstance(reason, str) else ""


def is_end(text: str) -> bool:
    try:
        return bool(json.loads(text) == {"end": True})
    except (ValueError, RecursionError):
        return False


def forwardable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers without the hop-by-hop ones (each hop, the channel included, sets its own).

    Content-Length stays: a body streamed upstream keeps the length its sender declared.
    """
    named_by_connection = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in HOP_BY_HOP and name.lower() not in named_by_connection
    ]
