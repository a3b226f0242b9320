"""The API Gateway management API: what it does to connections, and its HTTP listener.

``ManagementOperations`` posts to, describes and closes connections; the handler workers
reach it in process (inprocess.py, pool.py), and everyone else (the old path's handler
threads, scripts, tests) over HTTP on loopback, served here:

``POST|GET|DELETE /{stage}/@connections/{connectionId}`` as on AWS, with AWS's error
shapes (``x-amzn-ErrorType`` header, JSON ``message``) so botocore raises the same
exceptions: GoneException (410) for an unknown id, PayloadTooLargeException (413) over
128 KiB, ForbiddenException (403) for another stage. It can post to and drop any
connection, so it listens on 127.0.0.1 only and, as on AWS, takes only requests signed
(SigV4) with the gateway's management secret (sigv4.py); any other is ForbiddenException
(403) and changes nothing. A body over 128 KiB is refused (413) before its signature is
checked: it changes nothing either.

No request waits on a client: a post goes through the ConnectionWriter (a connection that
does not read its messages is closed and answers GoneException) and a delete only starts
the close.
"""

import logging
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from p2p_protocol.messages import encode
from signaling_gateway import metrics
from signaling_gateway.connections import ConnectionTable, LiveConnection
from signaling_gateway.sigv4 import SignatureError, verify
from signaling_gateway.writer import ConnectionWriter

log = logging.getLogger("signaling_gateway")

MAX_POST_BYTES = 131072
LOOPBACK = "127.0.0.1"


class _MalformedRequestsAsWarnings(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp logs a malformed request with its traceback (at ERROR, or DEBUG for non-HTTP
    bytes); here that is bad input from a client, so it becomes one WARNING line. Anything
    else passes unchanged: another exception is a bug and keeps its traceback."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(error, HttpProcessingError):
            why = (str(error.message).strip().splitlines() or ["malformed"])[0]
            self.logger.warning("Management API: refused a malformed HTTP request (%s)", why)
            return
        super().log(level, msg, *args, **kwargs)


def _json(body: dict[str, Any], status: int = 200, error_type: str | None = None) -> web.Response:
    headers = {"x-amzn-ErrorType": error_type} if error_type else None
    return web.Response(
        body=encode(body), status=status, headers=headers, content_type="application/json"
    )


ManagementError = tuple[int, str, str]
"""An answer of AWS's management API that refuses a request: status, error type, message."""
FORBIDDEN: ManagementError = (403, "ForbiddenException", "Forbidden")
TOO_LARGE: ManagementError = (
    413,
    "PayloadTooLargeException",
    f"Data exceeds {MAX_POST_BYTES} bytes",
)


def gone(connection_id: str) -> ManagementError:
    return (410, "GoneException", f"Connection {connection_id} is gone")


def _error(error: ManagementError) -> web.Response:
    status, error_type, message = error
    return _json({"message": message}, status, error_type)


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class ManagementOperations:
    """What the management API does to the gateway's connections: for its HTTP routes and for
    the handler workers, which call it in process (pool.py)."""

    def __init__(self, table: ConnectionTable, writer: ConnectionWriter) -> None:
        self._table = table
        self._writer = writer

    def open_connection(self, connection_id: str) -> LiveConnection | None:
        """The connection, unless it has closed or the gateway is closing it (gone)."""
        connection = self._table.get(connection_id)
        return None if connection is None or connection.closing else connection

    async def post(self, connection_id: str, data: bytes) -> bool:
        """Send ``data`` to the connection; False when it is gone."""
        connection = self.open_connection(connection_id)
        if connection is None:
            return False
        if not await self._writer.send(connection, data, text=_is_utf8(data)):
            return False
        metrics.count_delivered(data)
        return True

    def info(self, connection_id: str) -> dict[str, Any] | None:
        """``GetConnection``'s answer, or None when the connection is gone."""
        connection = self.open_connection(connection_id)
        if connection is None:
            return None
        return {
            "connectedAt": _iso(connection.caller.connected_at),
            "identity": {
                "sourceIp": connection.caller.source_ip,
                "userAgent": connection.caller.user_agent,
            },
            "lastActiveAt": _iso(connection.last_active_epoch),
        }

    def delete(self, connection_id: str) -> bool:
        """Start closing the connection; False when it is gone."""
        connection = self.open_connection(connection_id)
        if connection is None:
            return False
        log.info("Closing connection %s on request of the management API", connection_id)
        self._writer.close(connection, 1000, "Connection deleted")
        return True


class ManagementApi:
    def __init__(self, operations: ManagementOperations, stage: str, secret: str) -> None:
        """``secret``: the secret access key a caller's SigV4 signature must be made with."""
        self._operations = operations
        self._stage = stage
        self._secret = secret
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/{self._stage}"

    async def start(self, port: int) -> None:
        app = web.Application(client_max_size=MAX_POST_BYTES + 1, middlewares=[self._authenticate])
        path = "/{stage}/@connections/{connection_id}"
        app.router.add_post(path, self._post)
        app.router.add_get(path, self._get)
        app.router.add_delete(path, self._delete)
        # Bind the socket here: aiohttp has no public way to learn the port of port 0.
        sock = socket.create_server((LOOPBACK, port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, logger=_MalformedRequestsAsWarnings(log, {})
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Pass on only requests signed with the secret; the body is read here to check it."""
        if "Authorization" not in request.headers:
            return self._refuse(request, "it is not signed (no Authorization header)")
        if request.content_length is not None and request.content_length > MAX_POST_BYTES:
            return _error(TOO_LARGE)
        try:
            body = await request.read()  # kept by aiohttp: _post reads it again for free
        except web.HTTPRequestEntityTooLarge:  # a chunked body, without Content-Length
            return _error(TOO_LARGE)
        try:
            verify(self._secret, request.method, request.raw_path, request.headers.items(), body)
        except SignatureError as exc:
            return self._refuse(request, str(exc))
        return await handler(request)

    @staticmethod
    def _refuse(request: web.Request, why: str) -> web.Response:
        log.warning(
            "Management API: refused %s %r: %s", request.method[:16], request.path[:100], why
        )
        return _error(FORBIDDEN)

    def _connection_id(self, request: web.Request) -> str | None:
        """The connection a request names; None for another stage (Forbidden, as on AWS)."""
        if request.match_info["stage"] != self._stage:
            return None
        return request.match_info["connection_id"]

    async def _post(self, request: web.Request) -> web.Response:
        connection_id = self._connection_id(request)
        if connection_id is None:
            return _error(FORBIDDEN)
        if not await self._operations.post(connection_id, await request.read()):
            return _error(gone(connection_id))
        return web.Response(status=200)

    async def _get(self, request: web.Request) -> web.Response:
        connection_id = self._connection_id(request)
        if connection_id is None:
            return _error(FORBIDDEN)
        found = self._operations.info(connection_id)
        return _error(gone(connection_id)) if found is None else _json(found)

    async def _delete(self, request: web.Request) -> web.Response:
        connection_id = self._connection_id(request)
        if connection_id is None:
            return _error(FORBIDDEN)
        if not self._operations.delete(connection_id):
            return _error(gone(connection_id))
        return web.Response(status=204)


def _is_utf8(data: bytes) -> bool:
    """Text goes out in a text frame, anything else in a binary frame."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
