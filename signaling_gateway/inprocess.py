"""The management API answered inside the gateway: botocore's ``before-send`` hook.

A handler worker's boto3 ``apigatewaymanagementapi`` client builds, signs and will parse
every call exactly as on AWS; only the HTTP round trip is replaced. ``before-send`` hands
over the prepared request and takes the response from here, with the status, error header
and body management_api.py serves over HTTP, so botocore raises the same exceptions
(GoneException for a connection that is not open, and so on).

A post is answered from the worker's view of the open connections (``open_connections``,
kept by the gateway's ``opened``/``closed`` frames) and handed to the gateway to deliver
without waiting: a connection that closes meanwhile drops it, as on AWS a message posted to
a connection that closes in flight is lost. GET and DELETE are rare and ask the gateway.
"""

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders

from signaling_gateway.management_api import (
    FORBIDDEN,
    MAX_POST_BYTES,
    TOO_LARGE,
    ManagementError,
    gone,
)

IN_PROCESS_ENDPOINT = "http://management.signaling-gateway.invalid/{stage}"
"""The endpoint a worker's client is made for. Nothing is ever sent there: the hook answers
every request (and ``.invalid`` names no host)."""

Call = Callable[[str, tuple[Any, ...]], Any]
"""Ask the gateway (``op``, ``args``) and wait for its answer."""
Post = Callable[[str, bytes], None]
"""Hand the gateway a message for a connection; it does not answer."""


class _Body:
    """What AWSResponse reads a body from (urllib3's ``stream()``)."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> list[bytes]:
        return [self._content]


def _respond(url: str, status: int, body: dict[str, Any] | None = None) -> AWSResponse:
    content = json.dumps(body).encode() if body is not None else b""
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/json"
    return AWSResponse(url, status, headers, _Body(content))


def _error(url: str, error: ManagementError) -> AWSResponse:
    """The same refusal management_api.py answers over HTTP."""
    status, error_type, message = error
    response = _respond(url, status, {"message": message})
    response.headers["x-amzn-ErrorType"] = error_type
    return response


class InProcessManagementApi:
    def __init__(self, stage: str, open_connections: set[str], post: Post, call: Call) -> None:
        self._stage = stage
        self._open = open_connections
        self._post = post
        self._call = call

    def register(self, events: Any) -> None:
        """Answer every request of a client whose ``meta.events`` is ``events``."""
        events.register("before-send.apigatewaymanagementapi", self.answer)

    def answer(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        url = request.url or ""
        parts = urlsplit(url).path.split("/")
        if len(parts) != 4 or parts[2] != "@connections":  # "", stage, @connections, id
            return _error(url, (404, "NotFoundException", "No such resource"))
        if unquote(parts[1]) != self._stage:
            return _error(url, FORBIDDEN)
        connection_id = unquote(parts[3])
        if request.method == "POST":
            body = request.body or b""
            data = body.encode() if isinstance(body, str) else bytes(body)  # type: ignore[arg-type]
            if len(data) > MAX_POST_BYTES:
                return _error(url, TOO_LARGE)
            if connection_id not in self._open:
                return _error(url, gone(connection_id))
            self._post(connection_id, data)
            return _respond(url, 200)
        if request.method == "GET":
            found = self._call("get", (connection_id,))
            if found is None:
                return _error(url, gone(connection_id))
            return _respond(url, 200, found)
        if request.method == "DELETE":
            deleted = self._call("delete", (connection_id,))
            return _respond(url, 204) if deleted else _error(url, gone(connection_id))
        return _error(url, (405, "MethodNotAllowedException", "Method not allowed"))
