"""The client side of the HTTP framing (httpframing.py): one request on one data channel."""

import contextlib
from collections.abc import AsyncIterator

from aiortc import RTCDataChannel

from p2p_protocol.httpframing import (
    BINARY,
    END,
    FRAMING_VERSION,
    TEXT,
    WEBSOCKET,
    FramingError,
    ResponseHead,
    WebSocketAssembler,
    is_end,
    parse_response_head,
    parse_websocket_close,
    request_head,
    websocket_close,
    websocket_pieces,
)
from p2p_webrtc.channels import READ_SIZE, MessageChannel, parse_control


class HttpExchangeError(Exception):
    """The homelab or its service refused or failed the request; str() says why."""


async def response_head_of(channel: MessageChannel) -> ResponseHead:
    """The response head that comes first on ``channel``; HttpExchangeError with the
    homelab's reason when a refusal comes instead."""
    first = await channel.receive()
    if not isinstance(first, str):
        raise HttpExchangeError("the response did not start with its head")
    try:
        return parse_response_head(first)
    except FramingError:
        error, message = parse_control(first)
        raise HttpExchangeError(f"{error}: {message}") from None


class ChannelRequest:
    """Sends one framed request on a channel and reads the framed response."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self._channel = MessageChannel(channel)

    async def send(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
    ) -> None:
        try:
            await self._channel.send(request_head(method, path, headers))
            for start in range(0, len(body), READ_SIZE):
                await self._channel.send(body[start : start + READ_SIZE])
            await self._channel.send(END)
        except ConnectionError:
            await self.response()  # raises with the homelab's reason, when it sent one
            raise HttpExchangeError(
                "the homelab closed the channel before the request was sent"
            ) from None

    async def response(self) -> tuple[ResponseHead, AsyncIterator[bytes]]:
        return await response_head_of(self._channel), self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._channel.receive()
            if isinstance(message, bytes):
                yield message
            elif message is None:
                raise HttpExchangeError("the channel closed before the response ended")
            elif is_end(message):
                return
            else:
                error, text = parse_control(message)
                raise HttpExchangeError(f"{error}: {text}")

    def close(self) -> None:
        self._channel.close()


class ChannelWebSocket:
    """A WebSocket of an ``http://`` service over one data channel (framing version 2).

    ``open`` asks for the upgrade and returns once the service accepted it (101); a refusal
    raises HttpExchangeError with the service's status, or says that the homelab's bridge
    predates WebSockets. Then ``send`` and ``receive`` whole messages (str or bytes) until
    ``receive`` returns the close (code, reason).
    """

    def __init__(self, channel: RTCDataChannel) -> None:
        self._channel = MessageChannel(channel)
        self._assembler = WebSocketAssembler()
        self.protocol: str | None = None

    async def open(self, path: str, headers: list[tuple[str, str]]) -> None:
        await self._channel.send(request_head("GET", path, headers, WEBSOCKET))
        await self._channel.send(END)
        head = await response_head_of(self._channel)
        if head.status == 101:
            self.protocol = next(
                (v for k, v in head.headers if k.lower() == "sec-websocket-protocol"), None
            )
            return
        self._channel.close()
        if head.version < FRAMING_VERSION:
            raise HttpExchangeError(
                "the homelab's bridge does not tunnel WebSockets (it predates framing version "
                f"{FRAMING_VERSION}); update homelab-p2p-bridge on the homelab"
            )
        raise HttpExchangeError(
            f"the service refused the WebSocket: HTTP {head.status} {head.status_text}"
        )

    async def send(self, message: str | bytes) -> None:
        kind, data = (TEXT, message.encode()) if isinstance(message, str) else (BINARY, message)
        for piece in websocket_pieces(kind, data, READ_SIZE):
            await self._channel.send(piece)

    async def receive(self) -> str | bytes | tuple[int, str]:
        """The next message, or the close as (code, reason)."""
        while True:
            message = await self._channel.receive()
            if message is None:
                return (1006, "the channel closed without a close message")
            if isinstance(message, str):
                closing = parse_websocket_close(message)
                if closing is not None:
                    return closing
                error, text = parse_control(message)
                raise HttpExchangeError(f"{error}: {text}")
            complete = self._assembler.add(message)
            if complete is not None:
                kind, data = complete
                return data.decode() if kind == TEXT else data

    async def close(self, code: int = 1000, reason: str = "") -> tuple[int, str]:
        """Closes as WebSockets do, with a handshake: the close the far end answered with
        (messages still arriving before it are dropped)."""
        try:
            with contextlib.suppress(ConnectionError):
                await self._channel.send(websocket_close(code, reason))
            while not isinstance(answer := await self.receive(), tuple):
                pass
            return answer
        finally:
            self._channel.close()
