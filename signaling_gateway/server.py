"""The gateway: a websockets server that runs the signaling handler the way API Gateway does.

Towards clients: connection ids, ``$connect`` during the handshake (a non-200 answer
refuses it with that status), route selection on ``action``, messages of one connection
handled in order, 1009 for messages over 128 KiB, an idle timeout and a maximum age that
close with 1001, and a per-connection rate limit answered with ``rate_limited``. Beyond API
Gateway: caps on connections in all, per address and per token (caps.py), and a bound on
what a client may leave unread (writer.py).
Towards the handler: Lambda-shaped events, run beside the event loop by an Invoker
(pool.py: worker processes by default, or threads), and the management API, answered in
process for the workers (inprocess.py) and over HTTP for anyone else (management_api.py).
"""

import asyncio
import base64
import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from p2p_protocol.messages import (
    ErrorCode,
    encode,
    error_reply,
    internal_error_reply,
    select_route,
)
from p2p_runtime.ratelimit import TokenBucket
from p2p_runtime.tasks import OwnedTasks
from signaling_gateway import metrics
from signaling_gateway.apps_origin import AppsOrigin, origin, request_hostname
from signaling_gateway.caps import CapReached, ConnectionCaps, CountedConnection
from signaling_gateway.connections import ConnectionTable, LiveConnection
from signaling_gateway.events import Caller, EventFactory, new_connection_id
from signaling_gateway.management_api import ManagementApi, ManagementOperations
from signaling_gateway.pool import Invoker
from signaling_gateway.shares import HandlerShares
from signaling_gateway.sigv4 import new_secret as new_management_secret
from signaling_gateway.static import json_response, static_response
from signaling_gateway.worker import HandlerResponse
from signaling_gateway.writer import ConnectionWriter, write_limit
from signaling_lambda import authorizer

log = logging.getLogger("signaling_gateway")

MAX_MESSAGE_BYTES = 131072
"""API Gateway's message limit; a larger message closes the connection with 1009."""
GOING_AWAY = 1001
CLOSE_TIMEOUT = 5.0
"""Seconds a closing handshake may take before the TCP connection is dropped."""


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    stage: str = "prod"
    management_port: int | None = None
    """Default: ``port + 1`` (or any free port when ``port`` is 0)."""
    idle_timeout: float = 600.0
    max_connection_age: float = 7200.0
    rate_limit: float = 100.0
    """Messages per second per connection, bursts of twice that; 0 turns it off."""
    static_dir: Path | None = None
    apps_port: int | None = None
    """The browser proxy's app origin (served with ``static_dir``/apps). Default:
    ``port + 2`` (or any free port when ``port`` is 0); -1 serves none."""
    max_connections: int = 1000
    max_connections_per_ip: int = 100
    max_connections_per_token: int = 16
    """Keyed by the raw ``token`` query value, counted before ``$connect`` checks it."""
    max_send_buffer: int = 1048576
    """Unsent bytes a connection may hold; past it, it is closed with 1008."""
    handlers_per_token: int = 8
    """Messages of one token at the handler at once, running or queued there (shares.py)."""
    handler_queue: int = 512
    """Messages at the handler at once, all connections together; past it, none is read."""
    management_secret: str = field(default_factory=new_management_secret, repr=False)
    """The management API takes only requests signed with it (SigV4, as the secret access
    key); the handler's boto3 session holds it. Default: a random one per gateway."""

    def management_port_to_bind(self) -> int:
        if self.management_port is not None:
            return self.management_port
        return self.port + 1 if self.port else 0

    def apps_port_to_bind(self) -> int | None:
        """None when there is no app origin: no frontend, no apps/ in it, or turned off."""
        if self.static_dir is None or not (self.static_dir / "apps").is_dir():
            return None
        if self.apps_port is not None:
            return None if self.apps_port < 0 else self.apps_port
        return self.port + 2 if self.port else 0


def _status(value: object) -> HTTPStatus:
    if isinstance(value, int) and 400 <= value <= 599:
        with contextlib.suppress(ValueError):
            return HTTPStatus(value)
    return HTTPStatus.INTERNAL_SERVER_ERROR


class Gateway:
    def __init__(self, config: GatewayConfig, make_invoker: Callable[[str], Invoker]) -> None:
        """``make_invoker`` gets the management API's URL once it is listening."""
        self.config = config
        self._make_invoker = make_invoker
        self._table = ConnectionTable()
        self._caps = ConnectionCaps(
            config.max_connections, config.max_connections_per_ip, config.max_connections_per_token
        )
        self._writer = ConnectionWriter(config.max_send_buffer, CLOSE_TIMEOUT, self._closing)
        self._shares = HandlerShares(config.handlers_per_token)
        self._handler_queue = asyncio.Semaphore(config.handler_queue)
        self._operations = ManagementOperations(self._table, self._writer)
        self._management = ManagementApi(self._operations, config.stage, config.management_secret)
        self._failure_replies = OwnedTasks(log, "Telling a client its message failed")
        self._handshaking: weakref.WeakKeyDictionary[ServerConnection, Caller] = (
            weakref.WeakKeyDictionary()
        )
        self._invoker: Invoker | None = None
        self._server: Server | None = None
        self._apps: AppsOrigin | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._events: EventFactory  # made in start(), once the port is known
        self.port = config.port

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/{self.config.stage}"

    @property
    def management_url(self) -> str:
        return self._management.url()

    @property
    def apps_port(self) -> int | None:
        """The app origin's port, once started (None: not served)."""
        return self._apps.port if self._apps is not None else None

    @property
    def open_connections(self) -> int:
        return len(self._table)

    async def start(self) -> None:
        # The management API first: the threads' handler is configured with its URL.
        await self._management.start(self.config.management_port_to_bind())
        self._invoker = self._make_invoker(self._management.url())
        await self._invoker.start(self._operations)
        self._server = await serve(
            self._serve_connection,
            self.config.host,
            self.config.port,
            process_request=self._route_request,
            process_response=self._connect,
            create_connection=CountedConnection,
            compression=None,  # API Gateway negotiates no extensions; it also saves memory
            max_size=MAX_MESSAGE_BYTES,
            # Above what the writer lets a connection hold: send() never waits on a client.
            write_limit=write_limit(self.config.max_send_buffer),
            ping_interval=None,  # like API Gateway: only the idle timeout ends silent clients
            close_timeout=CLOSE_TIMEOUT,
            server_header="signaling-gateway",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        apps_port = self.config.apps_port_to_bind()
        if apps_port is not None and self.config.static_dir is not None:
            self._apps = AppsOrigin(self.config.static_dir / "apps", self.config.host, self.port)
            await self._apps.start(apps_port)
        self._events = EventFactory(f"{self.config.host}:{self.port}", self.config.stage)
        self._sweeper = asyncio.create_task(self._sweep(), name="gateway-timeouts")

    async def close(self) -> None:
        """Close every connection (1001), let their ``$disconnect`` run, then stop."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()  # returns once every connection handler has
        await self._writer.wait_closed()
        await self._failure_replies.wait()
        if self._apps is not None:
            await self._apps.close()
        await self._management.close()
        if self._invoker is not None:
            await self._invoker.close()

    async def _invoke(self, event: dict[str, Any], connection_id: str) -> HandlerResponse:
        """Run the handler on ``event`` and wait for it; None if it raised (a bug: logged)."""
        assert self._invoker is not None
        return await self._invoker.submit(event, connection_id)

    def _closing(self, live: LiveConnection) -> None:
        """The gateway started closing ``live``: posts to it are GoneException from now."""
        if self._invoker is not None:
            self._invoker.closed(live.connection_id)

    async def _route_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Plain GETs get static files; WebSocket upgrades only on ``/{stage}``."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if urlsplit(request.path).path == "/proxy-config.json":
                return self._proxy_config(connection, request)
            return await asyncio.to_thread(static_response, self.config.static_dir, request.path)
        path = urlsplit(request.path).path
        if path != f"/{self.config.stage}":
            log.warning(
                "Refused a WebSocket connection to %r: this gateway serves /%s",
                path[:100],
                self.config.stage,
            )
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        return self._admit(connection, request)

    def _proxy_config(self, connection: ServerConnection, request: Request) -> Response:
        """What proxy.html needs to know: the app origin and the signaling URL, on the host name
        the browser used (the same answer as on AWS, signaling_lambda/pages.py)."""
        hostname = request_hostname(request)
        if self._apps is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "This gateway serves no app origin.\n")
        if hostname is None:
            return connection.respond(HTTPStatus.BAD_REQUEST, "The Host header is not a host.\n")
        signaling = origin(hostname, self.port).replace("http://", "ws://", 1)
        return json_response(
            {
                "appsOrigin": origin(hostname, self._apps.port),
                "signalingUrl": f"{signaling}/{self.config.stage}",
            }
        )

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Count an upgrade request under the caps until its connection ends; past one, refuse."""
        assert isinstance(connection, CountedConnection)  # serve() makes them
        source_ip = _source_ip(connection)
        try:
            connection.hold(self._caps.admit(source_ip, _query(request).get("token")))
        except CapReached as cap:
            log.warning(
                "Refused a connection from %s: %s (raise %s)", source_ip, cap.why, cap.option
            )
            return connection.respond(cap.status, f"{cap.why[0].upper()}{cap.why[1:]}.\n")
        return None

    async def _connect(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        """Run ``$connect`` on a valid upgrade; a non-200 answer refuses it with that status."""
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            return None  # a static file, a refusal above, or an invalid handshake
        caller = Caller(
            connection_id=new_connection_id(),
            source_ip=_source_ip(connection),
            user_agent=request.headers.get("User-Agent", ""),
        )
        headers, query = dict(request.headers.raw_items()), _query(request)
        # As API Gateway does: the authorizer first; its context goes with every later event.
        events = self._events
        decision = await self._invoke(
            events.authorizer_request(caller, headers, query), caller.connection_id
        )
        context = authorizer.allowed_context(decision)
        if context is None:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        caller = dataclasses.replace(caller, authorizer=context)
        answer = await self._invoke(events.connect(caller, headers, query), caller.connection_id)
        status = answer.get("statusCode") if answer else 500
        if status != 200:
            refused = _status(status)
            return connection.respond(refused, f"{refused.phrase}\n")
        self._handshaking[connection] = caller
        return None

    async def _serve_connection(self, websocket: ServerConnection) -> None:
        caller = self._handshaking.pop(websocket, None)
        if caller is None:
            return
        rate = self.config.rate_limit
        live = LiveConnection(
            caller,
            websocket,
            TokenBucket(rate, 2 * rate) if rate > 0 else None,
            share=_token(websocket) or caller.source_ip,
        )
        self._table.add(live)
        assert self._invoker is not None
        self._invoker.opened(caller.connection_id)
        try:
            await self._receive(live)
            # Closing: what it still sends stays unread (websockets stops reading once its
            # queue is full), so it cannot keep the gateway busy while its close runs out.
            await websocket.wait_closed()
        finally:
            self._table.remove(caller.connection_id)
            if not live.closing:
                self._invoker.closed(caller.connection_id)
            await self._disconnected(live)

    async def _receive(self, live: LiveConnection) -> None:
        """Handle the messages of ``live`` in order until it closes or the gateway closes it."""
        try:
            async for message in live.websocket:
                if live.closing:
                    return
                live.touch()
                if live.limiter is not None and not live.limiter.allow():
                    await self._refuse_rate_limited(live)
                    continue
                if live.rate_limited_count:
                    log.info(
                        "Connection %s is under the rate limit again (%d messages were refused)",
                        live.connection_id,
                        live.rate_limited_count,
                    )
                    live.rate_limited_count = 0
                await self._on_message(live, message)
        except ConnectionClosed:
            pass

    async def _on_message(self, live: LiveConnection, message: str | bytes) -> None:
        """Hand ``message`` to the handler. With an invoker that keeps each connection's order
        this returns once it is handed over (the next one may follow at once); otherwise once
        the handler is done with it."""
        assert self._invoker is not None
        arrived = time.monotonic()
        if isinstance(message, bytes):
            route = "binary"
            event = self._events.binary_message(live.caller, base64.b64encode(message).decode())
        else:
            route = select_route(message)
            event = self._events.message(live.caller, route, message)
        metrics.MESSAGES.labels(route).inc()
        await self._shares.acquire(live.share)
        try:
            await self._handler_queue.acquire()
        except BaseException:
            self._shares.release(live.share)
            raise
        handled = self._invoker.submit(event, live.connection_id)
        handled.add_done_callback(partial(self._handled, live, route, arrived, event))
        if not self._invoker.keeps_order:
            await asyncio.wait([handled])

    def _handled(
        self,
        live: LiveConnection,
        route: str,
        arrived: float,
        event: dict[str, Any],
        handled: "asyncio.Future[HandlerResponse]",
    ) -> None:
        self._handler_queue.release()
        self._shares.release(live.share)
        metrics.HANDLING.labels(route).observe(time.monotonic() - arrived)
        if handled.cancelled() or handled.result() is None:
            # What API Gateway tells a client when its function fails.
            reply = internal_error_reply(live.connection_id, event["requestContext"]["requestId"])
            self._failure_replies.spawn(self._tell(live, reply))

    async def _tell(self, live: LiveConnection, reply: dict[str, Any]) -> None:
        await self._writer.send(live, encode(reply))

    async def _refuse_rate_limited(self, live: LiveConnection) -> None:
        rate = self.config.rate_limit
        live.rate_limited_count += 1
        if live.rate_limited_count == 1:
            log.warning(
                "Connection %s sends more than %g messages per second: refusing its messages "
                "until it slows down",
                live.connection_id,
                rate,
            )
        reply = error_reply(
            ErrorCode.RATE_LIMITED,
            f"Too many messages: at most {rate:g} per second (bursts of {2 * rate:g}) "
            "per connection",
        )
        await self._writer.send(live, encode(reply))

    async def _disconnected(self, live: LiveConnection) -> None:
        protocol = live.websocket.protocol
        sent, received = protocol.close_sent, protocol.close_rcvd
        if sent is not None and sent.code == 1009:
            log.warning(
                "Closed connection %s with 1009: it sent a message over %d bytes",
                live.connection_id,
                MAX_MESSAGE_BYTES,
            )
        if received is not None and (sent is None or protocol.close_rcvd_then_sent):
            code, reason = received.code, received.reason
        elif sent is not None:
            code, reason = sent.code, sent.reason
        else:
            code, reason = 1006, "Connection lost"
        await self._invoke(self._events.disconnect(live.caller, code, reason), live.connection_id)

    async def _sweep(self) -> None:
        """Close connections past the idle timeout or the maximum age, as API Gateway does."""
        idle, age = self.config.idle_timeout, self.config.max_connection_age
        interval = max(0.05, min(1.0, idle / 4, age / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for live in self._table.snapshot():
                if live.closing:
                    continue
                if now - live.opened >= age:
                    why = f"it reached the maximum connection age of {age:g} s"
                    self._expire(live, why, "Maximum connection age")
                elif now - live.last_active >= idle:
                    self._expire(live, f"it was idle for {idle:g} s", "Idle timeout")

    def _expire(self, live: LiveConnection, why: str, reason: str) -> None:
        log.info("Closing connection %s: %s", live.connection_id, why)
        self._writer.close(live, GOING_AWAY, reason)


def _token(connection: ServerConnection) -> str | None:
    return connection.token if isinstance(connection, CountedConnection) else None


def _source_ip(connection: ServerConnection) -> str:
    remote = connection.remote_address
    return str(remote[0]) if remote else "unknown"


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(request.path).query))
