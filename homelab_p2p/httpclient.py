"""The client side of the HTTP framing (httpframing.py): one request on one data channel."""

from collections.abc import AsyncIterator

from aiortc import RTCDataChannel

from p2p_protocol.httpframing import (
    END,
    FramingError,
    ResponseHead,
    is_end,
    parse_response_head,
    request_head,
)
from p2p_webrtc.channels import READ_SIZE, MessageChannel, parse_control


class HttpExchangeError(Exception):
    """The homelab or its service refused or failed the request; str() says why."""


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
        first = await self._channel.receive()
        if not isinstance(first, str):
            raise HttpExchangeError("the response did not start with its head")
        try:
            return parse_response_head(first), self._body()
        except FramingError:
            error, message = parse_control(first)
            raise HttpExchangeError(f"{error}: {message}") from None

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
