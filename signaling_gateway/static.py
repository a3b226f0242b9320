"""Plain GET requests on the WebSocket port: the files of ``frontend/``."""

import json
import mimetypes
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

MAX_FILE_BYTES = 16 * 1024 * 1024


def _response(
    status: HTTPStatus,
    body: bytes,
    content_type: str,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
            *extra_headers,
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def json_response(value: object) -> Response:
    body = json.dumps(value).encode()
    return _response(HTTPStatus.OK, body, "application/json")


def not_found(detail: str = "Not Found") -> Response:
    return _response(HTTPStatus.NOT_FOUND, f"{detail}\n".encode(), "text/plain; charset=utf-8")


def static_response(
    root: Path | None, request_path: str, extra_headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """The file under ``root`` that ``request_path`` names (``/`` is index.html), or 404.

    It reads from disk: call it off the event loop.
    """
    if root is None:
        return not_found("Not Found: this gateway serves no frontend/ directory")
    relative = unquote(urlsplit(request_path).path).lstrip("/")
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    base = root.resolve()
    try:
        candidate = (base / relative).resolve()
        # resolve() follows "..", symlinks and all: anything outside root is refused.
        if not candidate.is_relative_to(base) or not candidate.is_file():
            return not_found()
        if candidate.stat().st_size > MAX_FILE_BYTES:
            return not_found()
        body = candidate.read_bytes()
    except (OSError, ValueError):  # unreadable, or a name no file can have (NUL)
        return not_found()
    content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type == "application/javascript":
        content_type += "; charset=utf-8"
    return _response(HTTPStatus.OK, body, content_type, extra_headers)
