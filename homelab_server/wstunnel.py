"""A WebSocket of an ``http://`` service, tunnelled through one data channel (framing v2).

The client asked with ``"upgrade": "websocket"``; the homelab opens the WebSocket to the
service (aiohttp), answers 101 (or the service's refusal, a plain response), and then
copies messages both ways as pieces (httpframing.websocket_pieces) until either end closes:
the service's close becomes a ``{"close": ...}`` control message, the client's becomes the
WebSocket's close. A message longer than MAX_WEBSOCKET_MESSAGE closes both with 1009.
"""

import asyncio
import contextlib
import logging
from http import HTTPStatus

import aiohttp
import yarl
from aiohttp import WSCloseCode

from p2p_protocol.httpframing import (
    BINARY,
    END,
    MAX_WEBSOCKET_MESSAGE,
    TEXT,
    FramingError,
    MessageTooLong,
    RequestHead,
    WebSocketAssembler,
    forwardable,
    parse_websocket_close,
    response_head,
    websocket_close,
    websocket_pieces,
)
from p2p_webrtc.channels import READ_SIZE, MessageChannel

log = logging.getLogger("homelab_server.wstunnel")

# aiohttp's names for the close codes (RFC 6455 section 7.4.1).
GOING_AWAY = WSCloseCode.GOING_AWAY
PROTOCOL_ERROR = WSCloseCode.PROTOCOL_ERROR
INVALID_DATA = WSCloseCode.INVALID_TEXT
MESSAGE_TOO_BIG = WSCloseCode.MESSAGE_TOO_BIG


def _subprotocols(head: RequestHead) -> list[str]:
    return [
        protocol.strip()
        for name, value in head.headers
        if name.lower() == "sec-websocket-protocol"
        for protocol in value.split(",")
        if protocol.strip()
    ]


def _upstream_headers(head: RequestHead) -> list[tuple[str, str]]:
    # aiohttp makes its own handshake (key, version, extensions, protocols).
    return [
        (k, v) for k, v in forwardable(head.headers) if not k.lower().startswith("sec-websocket-")
    ]


async def tunnel_websocket(
    channel: MessageChannel,
    session: aiohttp.ClientSession,
    url: yarl.URL,
    head: RequestHead,
    what: str,
) -> None:
    """Serve the upgrade ``head`` on ``channel`` (its end message read already).

    ``what`` names the service and the peer in log lines. aiohttp's ClientError (the service
    unreachable) is the caller's to report.
    """
    try:
        socket = await session.ws_connect(
            url.with_scheme("ws"),
            headers=_upstream_headers(head),
            protocols=_subprotocols(head),
            max_msg_size=MAX_WEBSOCKET_MESSAGE + 1,  # aiohttp refuses a message of its limit
            autoclose=True,
            autoping=True,
        )
    except aiohttp.WSServerHandshakeError as refused:
        # The service answered without upgrading: pass its status on, as HTTP would.
        await channel.send(response_head(refused.status, _phrase(refused.status), []))
        await channel.send(END)
        return
    async with socket:
        accepted = [("Sec-WebSocket-Protocol", socket.protocol)] if socket.protocol else []
        await channel.send(response_head(101, "Switching Protocols", accepted))
        shown = f"{what}: WebSocket {url.path[:128]}"  # the path is the peer's text: kept short
        log.info("%s open", shown)
        await _Tunnel(channel, socket, shown).run()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class _Tunnel:
    """Both directions of one open WebSocket. The client's side only ever closes the
    service's socket (noting the code and why); the service's side sees the socket end and is
    the one that tells the client and closes the channel."""

    def __init__(
        self, channel: MessageChannel, socket: aiohttp.ClientWebSocketResponse, what: str
    ) -> None:
        self._channel = channel
        self._socket = socket
        self._what = what
        self._closed_here: tuple[int, str] | None = None
        """The code (and reason) this end closed the socket with, for the client."""

    async def run(self) -> None:
        """Copies until the socket closed."""
        to_service = asyncio.ensure_future(self._channel_to_service())
        try:
            await self._service_to_channel()
        finally:
            to_service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await to_service

    async def _close_socket(self, code: int, reason: str) -> None:
        self._closed_here = (code, reason)
        await self._socket.close(code=code)

    async def _service_to_channel(self) -> None:
        async for message in self._socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                pieces = websocket_pieces(TEXT, message.data.encode(), READ_SIZE)
            elif message.type is aiohttp.WSMsgType.BINARY:
                pieces = websocket_pieces(BINARY, message.data, READ_SIZE)
            elif message.type is aiohttp.WSMsgType.ERROR:
                log.warning("%s failed at the service: %s", self._what, message.data)
                too_big = getattr(message.data, "code", None) == MESSAGE_TOO_BIG
                self._closed_here = (MESSAGE_TOO_BIG if too_big else GOING_AWAY, "")
                break
            else:
                continue
            for piece in pieces:
                await self._channel.send(piece)
        if self._closed_here is not None:
            code, reason = self._closed_here
        elif self._socket.close_code is not None:
            code, reason = self._socket.close_code, "closed by the service"
        else:
            code, reason = GOING_AWAY, "the service went away"
        # Before the client hears it: it may end the whole connection at once.
        log.info("%s closed (%d)", self._what, code)
        with contextlib.suppress(ConnectionError):
            await self._channel.send(websocket_close(code, reason))
        self._channel.close()

    async def _channel_to_service(self) -> None:
        """Messages from the client to the service, until the client closes (or breaks the
        framing, or goes away): then the socket is closed with the code that says why."""
        assembler = WebSocketAssembler()
        while True:
            message = await self._channel.receive()
            if message is None:  # the client went away without a close
                await self._close_socket(GOING_AWAY, "")
                return
            if isinstance(message, str):
                closing = parse_websocket_close(message)
                await self._close_socket(*(closing or (PROTOCOL_ERROR, "not a close message")))
                return
            try:
                complete = assembler.add(message)
                if complete is None:
                    continue
                kind, data = complete
                if kind == BINARY:
                    await self._socket.send_bytes(data)
                else:
                    await self._socket.send_str(data.decode())
            except (FramingError, UnicodeDecodeError) as exc:
                code = (
                    MESSAGE_TOO_BIG
                    if isinstance(exc, MessageTooLong)
                    else INVALID_DATA
                    if isinstance(exc, UnicodeDecodeError)
                    else PROTOCOL_ERROR
                )
                log.warning("%s: closing with %d: %s", self._what, code, exc)
                await self._close_socket(code, str(exc))
                return
