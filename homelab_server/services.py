"""The homelab's services: what a data channel's label connects to.

``echo`` is built in. A ``tcp://`` service is bridged as a byte stream (channels.py); an
``http://`` service takes one framed request per channel (httpframing.py) and streams the
response back. Any other label is refused: the channel gets a control message saying why
and is closed, and the log says so.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

import aiohttp
import yarl
from aiortc import RTCDataChannel

from homelab_server import metrics
from homelab_server.config import Service
from homelab_server.wstunnel import tunnel_websocket
from p2p_protocol.errors import ChannelRefusal
from p2p_protocol.httpframing import (
    END,
    FramingError,
    RequestHead,
    forwardable,
    is_end,
    parse_request_head,
    response_head,
    service_path,
)
from p2p_protocol.names import ECHO_LABEL
from p2p_webrtc.channels import (
    READ_SIZE,
    ChannelBridge,
    EchoChannel,
    MessageChannel,
    refuse,
)

log = logging.getLogger("homelab_server.services")

CONNECT_TIMEOUT = 10.0
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


class ServiceRouter:
    """Connects each incoming data channel to the service its label names."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self._services = services
        self._http: aiohttp.ClientSession | None = None

    def offered(self) -> str:
        return ", ".join([*self._services, ECHO_LABEL])

    def serve(
        self, channel: RTCDataChannel, peer: str, pair: str | None = None
    ) -> Coroutine[Any, Any, None] | None:
        """Starts listening on ``channel`` now; returns the work that serves it, if any.

        Call it from the ``datachannel`` event itself: the client's first messages can be
        handled in the same loop step as the channel's opening (datagrams are read in
        batches), so whatever consumes them must already listen.
        """
        label = channel.label
        if label == ECHO_LABEL:
            EchoChannel(
                channel, lambda why: log.warning("Closed the echo channel of %s: it %s", peer, why)
            )
            return None
        service = self._services.get(label)
        if service is None:
            shown = label[:64]  # a label is the peer's text: what reaches the log is short
            log.warning(
                "Refused data channel %r from %s: no such service (offered: %s)",
                shown,
                peer,
                self.offered(),
            )
            metrics.CHANNELS_REFUSED.labels(ChannelRefusal.UNKNOWN_SERVICE.value).inc()
            refuse(
                channel,
                ChannelRefusal.UNKNOWN_SERVICE,
                f"this homelab offers no service {shown!r} (offered: {self.offered()})",
                at_open=True,
            )
            return None
        # The pair type of each channel: after a fall forward a client has a relayed and a
        # direct connection at once, and this line says which one each channel took.
        path = pair or "unknown"
        log.info("Peer %s opened %r -> %s over %s", peer, label, service.url, path)
        metrics.CHANNELS_OPENED.labels(label, path).inc()
        if service.scheme == "tcp":
            return self._serve_tcp(ChannelBridge(channel), channel, service, peer)
        return HttpExchange(channel, service, self._session(), peer).run()

    async def _serve_tcp(
        self, bridge: ChannelBridge, channel: RTCDataChannel, service: Service, peer: str
    ) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(service.host, service.port)
        except (OSError, TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no answer"
            log.warning(
                "Service %r (%s) is unavailable for %s: %s",
                service.label,
                service.url,
                peer,
                reason,
            )
            metrics.CHANNELS_REFUSED.labels(ChannelRefusal.SERVICE_UNAVAILABLE.value).inc()
            refuse(
                channel,
                ChannelRefusal.SERVICE_UNAVAILABLE,
                f"cannot connect to {service.url}: {reason}",
                at_open=True,
            )
            bridge.discard()
            return
        try:
            await bridge.run(reader, writer)
        finally:
            _log_bridge_end(peer, service, bridge)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=300),
                auto_decompress=True,
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _log_bridge_end(peer: str, service: Service, bridge: ChannelBridge) -> None:
    metrics.SERVICE_BYTES.labels(service.label, "in").inc(bridge.bytes_to_stream)
    metrics.SERVICE_BYTES.labels(service.label, "out").inc(bridge.bytes_to_channel)
    if bridge.overflow:
        log.warning(
            "Peer %s: closed %r: the homelab's end %s; the peer ignores flow control",
            peer,
            service.label,
            bridge.overflow,
        )
    if bridge.reset:
        log.info("Peer %s: %r %s; its connection was reset", peer, service.label, bridge.reset)
    log.info(
        "Peer %s closed %r (%d bytes in, %d bytes out)",
        peer,
        service.label,
        bridge.bytes_to_stream,
        bridge.bytes_to_channel,
    )


class HttpExchange:
    """One framed HTTP request on a channel, forwarded to the service, response streamed back."""

    def __init__(
        self,
        channel: RTCDataChannel,
        service: Service,
        session: aiohttp.ClientSession,
        peer: str = "a peer",
    ) -> None:
        self._channel = MessageChannel(channel)
        self._service = service
        self._session = session
        self._peer = peer
        self._body_error: FramingError | None = None
        self.body_in = 0
        self.body_out = 0
        """Body bytes to and from the service, for the metrics (heads and WebSocket
        tunnels are not counted)."""

    async def _body(self, declared: int | None) -> AsyncIterator[bytes]:
        """The request body as it arrives, until the end message; exactly ``declared`` bytes."""
        received = 0
        try:
            while True:
                message = await self._channel.receive()
                if message is None:
                    raise FramingError(
                        self._channel.overflow or "the channel closed before the request ended"
                    )
                if isinstance(message, bytes):
                    received += len(message)
                    self.body_in += len(message)
                    if declared is not None and received > declared:
                        raise FramingError(f"the body is longer than its Content-Length {declared}")
                    yield message
                elif not is_end(message):
                    raise FramingError("expected body chunks or the end message")
                elif declared is not None and received != declared:
                    raise FramingError(
                        f"the body ended after {received} bytes, not its Content-Length {declared}"
                    )
                else:
                    return
        except FramingError as exc:
            self._body_error = exc  # aiohttp may wrap what its body raises
            raise

    async def run(self) -> None:
        channel = self._channel.channel
        try:
            first = await self._channel.receive()
            if not isinstance(first, str):
                raise FramingError("the first message must be the request head (text)")
            head = parse_request_head(first)
            await (self._upgrade(head) if head.upgrade else self._forward(head))
        except FramingError as exc:
            self._refuse_bad_request(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if self._body_error is not None:
                self._refuse_bad_request(self._body_error)
                return
            log.warning(
                "Service %r (%s) failed a request: %s", self._service.label, self._service.url, exc
            )
            metrics.CHANNELS_REFUSED.labels(ChannelRefusal.SERVICE_UNAVAILABLE.value).inc()
            refuse(
                channel,
                ChannelRefusal.SERVICE_UNAVAILABLE,
                f"{self._service.url}: {exc or type(exc).__name__}",
            )
        except ConnectionError:
            pass  # the client went away
        finally:
            self._channel.close()
            metrics.SERVICE_BYTES.labels(self._service.label, "in").inc(self.body_in)
            metrics.SERVICE_BYTES.labels(self._service.label, "out").inc(self.body_out)

    def _refuse_bad_request(self, exc: FramingError) -> None:
        log.warning("Refused an HTTP request of %s on %r: %s", self._peer, self._service.label, exc)
        refuse(self._channel.channel, ChannelRefusal.BAD_REQUEST, str(exc))

    def _url(self, head: RequestHead) -> yarl.URL:
        service = self._service
        target, _, query = service_path(head.path).partition("?")
        # Encoded: the path is resolved already, and yarl must not resolve it again.
        return yarl.URL.build(
            scheme="http",
            host=service.host,
            port=service.port,
            path=service.base_path + target,
            query_string=query,
            encoded=True,
        )

    async def _relay_body(self, response: aiohttp.ClientResponse) -> None:
        async for chunk in response.content.iter_chunked(READ_SIZE):
            await self._channel.send(chunk)
            self.body_out += len(chunk)

    async def _unless_the_client_leaves(self, work: Coroutine[Any, Any, None]) -> None:
        """``work``, stopped when the channel closes first: a client that closed an idle
        stream (an event stream) must not hold the service's connection until it speaks."""
        working = asyncio.create_task(work, name="http-response")
        closed = asyncio.create_task(self._channel.wait_closed(), name="http-channel-closed")
        try:
            await asyncio.wait({working, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (working, closed):
                task.cancel()
            await asyncio.gather(working, closed, return_exceptions=True)
        if working.cancelled():
            raise ConnectionError("the client closed the channel")
        working.result()  # what it raised, if it did

    async def _upgrade(self, head: RequestHead) -> None:
        async for _ in self._body(0):  # an upgrade has no body: up to the end message
            pass
        what = f"Peer {self._peer} on {self._service.label!r}"
        await tunnel_websocket(self._channel, self._session, self._url(head), head, what)

    async def _forward(self, head: RequestHead) -> None:
        url = self._url(head)
        declared = any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in head.headers
        )
        body = self._body(head.content_length)
        data = body if declared or head.method not in BODILESS_METHODS else None
        if data is None:
            async for _ in body:  # nothing to send upstream; read up to the end message
                pass
        async with self._session.request(
            head.method,
            url,
            headers=forwardable(head.headers),
            data=data,
            allow_redirects=False,
        ) as response:
            if self._body_error is not None:  # the service answered a request cut short
                raise self._body_error
            # aiohttp has decompressed the body: its encoding and length no longer apply.
            drop = (
                {"content-encoding", "content-length"}
                if "Content-Encoding" in response.headers
                else set()
            )
            reply_headers = [
                (k, v)
                for k, v in forwardable(list(response.headers.items()))
                if k.lower() not in drop
            ]
            await self._channel.send(
                response_head(response.status, response.reason or "", reply_headers)
            )
            await self._unless_the_client_leaves(self._relay_body(response))
        if self._body_error is not None:
            raise self._body_error
        await self._channel.send(END)
