"""HTTP over a data channel: the framing of ``http://`` services (docs/data-channels.md).

One request per data channel, whose label is the service's:

    client -> homelab   text   {"method": "POST", "path": "/api?x=1", "headers": [[name, value]]}
                        binary request body chunks (none for a body-less request)
                        text   {"end": true}
    homelab -> client   text   {"status": 200, "statusText": "OK", "headers": [[name, value], ...]}
                        binary response body chunks (16 KiB each at most)
                        text   {"end": true}

Either side may instead send text ``{"error": CODE, "message": TEXT}`` at any point; the
homelab closes the channel after the end or an error. Plain functions, no I/O.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

END = json.dumps({"end": True})
MAX_HEAD_BYTES = 64 * 1024
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


class FramingError(ValueError):
    """A message that does not follow the framing; str() says how."""


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class ResponseHead:
    status: int
    status_text: str
    headers: list[tuple[str, str]]


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
            or any(c in pair[1] for c in "\r\n\0")
        ):
            raise FramingError(f"header {pair!r} is not a [name, value] pair of valid strings")
        headers.append((pair[0], pair[1]))
    return headers


def parse_request_head(text: str) -> RequestHead:
    head = _json_object(text, "request head")
    method, path = head.get("method"), head.get("path", "/")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise FramingError('"method" must be an HTTP method in capitals, such as "GET"')
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in " \r\n\0"):
        raise FramingError('"path" must start with "/" and hold no spaces or line breaks')
    return RequestHead(method, path, _headers(head.get("headers", [])))


def request_head(method: str, path: str, headers: list[tuple[str, str]]) -> str:
    return json.dumps({"method": method, "path": path, "headers": [list(h) for h in headers]})


def parse_response_head(text: str) -> ResponseHead:
    head = _json_object(text, "response head")
    status = head.get("status")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise FramingError('"status" must be an HTTP status code')
    return ResponseHead(status, str(head.get("statusText", "")), _headers(head.get("headers", [])))


def response_head(status: int, status_text: str, headers: list[tuple[str, str]]) -> str:
    return json.dumps(
        {"status": status, "statusText": status_text, "headers": [list(h) for h in headers]}
    )


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
