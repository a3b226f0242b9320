"""The homelab's services: what a data channel's label connects to.

``echo`` is built in. A ``tcp://`` service is bridged as a byte stream (channels.py); an
``http://`` service takes one framed request per channel (httpframing.py) and streams the
response back. Any other label is refused: the channel gets a control message saying why
and is closed, and the log says so.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping

import aiohttp
from aiortc import RTCDataChannel

from homelab_server.channels import (
    READ_SIZE,
    ChannelBridge,
    EchoChannel,
    MessageChannel,
    control_message,
)
from homelab_server.config import ECHO_LABEL, Service
from homelab_server.httpframing import (
    END,
    FramingError,
    forwardable,
    is_end,
    parse_request_head,
    response_head,
)

log = logging.getLogger("homelab_server.services")

CONNECT_TIMEOUT = 10.0
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


def refuse(channel: RTCDataChannel, error: str, message: str) -> None:
    if channel.readyState == "open":
        channel.send(control_message(error, message))
        channel.close()


class ServiceRouter:
    """Connects each incoming data channel to the service its label names."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self._services = services
        self._http: aiohttp.ClientSession | None = None

    def offered(self) -> str:
        return ", ".join([*self._services, ECHO_LABEL])

    def serve(self, channel: RTCDataChannel, peer: str) -> Awaitable[None] | None:
        """Starts listening on ``channel`` now; returns the work that serves it, if any.

        Call it from the ``datachannel`` event itself: the client's first messages can be
        handled in the same loop step as the channel's opening (datagrams are read in
        batches), so whatever consumes them must already listen.
        """
        label = channel.label
        if label == ECHO_LABEL:
            EchoChannel(channel)
            return None
        service = self._services.get(label)
        if service is None:
            log.warning(
                "Refused data channel %r from %s: no such service (offered: %s)",
                label,
                peer,
                self.offered(),
            )
            refuse(
                channel,
                "unknown_service",
                f"this homelab offers no service {label!r} (offered: {self.offered()})",
            )
            return None
        log.info("Peer %s opened %r -> %s", peer, label, service.url)
        if service.scheme == "tcp":
            return self._serve_tcp(ChannelBridge(channel), channel, service, peer)
        return HttpExchange(channel, service, self._session()).run()

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
            refuse(channel, "service_unavailable", f"cannot connect to {service.url}: {reason}")
            return
        await bridge.run(reader, writer)
        log.info(
            "Peer %s closed %r (%d bytes in, %d bytes out)",
            peer,
            service.label,
            bridge.bytes_to_stream,
            bridge.bytes_to_channel,
        )

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


class HttpExchange:
    """One framed HTTP request on a channel, forwarded to the service, response streamed back."""

    def __init__(
        self, channel: RTCDataChannel, service: Service, session: aiohttp.ClientSession
    ) -> None:
        self._channel = MessageChannel(channel)
        self._service = service
        self._session = session

    async def _body(self) -> AsyncIterator[bytes]:
        """The request body as it arrives, until the end message."""
        while True:
            message = await self._channel.receive()
            if message is None:
                raise FramingError("the channel closed before the request ended")
            if isinstance(message, bytes):
                yield message
            elif is_end(message):
                return
            else:
                raise FramingError("expected body chunks or the end message")

    async def run(self) -> None:
        channel = self._channel.channel
        try:
            first = await self._channel.receive()
            if not isinstance(first, str):
                raise FramingError("the first message must be the request head (text)")
            head = parse_request_head(first)
            await self._forward(head.method, head.path, head.headers)
        except FramingError as exc:
            log.warning("Refused an HTTP request on %r: %s", self._service.label, exc)
            refuse(channel, "bad_request", str(exc))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "Service %r (%s) failed a request: %s", self._service.label, self._service.url, exc
            )
            refuse(
                channel, "service_unavailable", f"{self._service.url}: {exc or type(exc).__name__}"
            )
        except ConnectionError:
            pass  # the client went away
        finally:
            self._channel.close()

    async def _forward(self, method: str, path: str, headers: list[tuple[str, str]]) -> None:
        service = self._service
        url = f"http://{service.host}:{service.port}{service.base_path}{path}"
        declared = any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in headers
        )
        body = self._body()
        data = body if declared or method not in BODILESS_METHODS else None
        if data is None:
            async for _ in body:  # nothing to send upstream; read up to the end message
                pass
        async with self._session.request(
            method, url, headers=forwardable(headers), data=data, allow_redirects=False
        ) as response:
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
            async for chunk in response.content.iter_chunked(READ_SIZE):
                await self._channel.send(chunk)
        await self._channel.send(END)
