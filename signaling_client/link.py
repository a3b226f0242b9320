"""One WebSocket connection to the signaling service, as the daemon and the client both use it.

``Link`` is the asyncio adapter of ``p2p_protocol.session.LinkProtocol``: it reads in a task
of its own and writes what the protocol gives it; the protocol decides which reply
(``registered``, ``connected``, errors) answers which request, and what is a relayed signal.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from p2p_protocol.messages import LINK_SEND_BURST, LINK_SEND_RATE, ErrorCode, error_code
from p2p_protocol.session import (
    REPLY_TIMEOUT,
    ErrorReceived,
    LinkProtocol,
    Lost,
    Match,
    NotJson,
    Outcome,
    PongReceived,
    Refused,
    Replied,
    SignalReceived,
    TimedOut,
)
from p2p_runtime.ratelimit import TokenBucket
from p2p_runtime.tasks import OwnedTasks
from signaling_client.tickets import ReplyTickets

log = logging.getLogger("signaling_client")

OPEN_TIMEOUT = 10.0
GUIDE_URL_HINT = (
    "verify the WebSocket URL (wss://<api-id>.execute-api.<region>.amazonaws.com/prod, or "
    "ws://HOST:8765/prod for a local gateway) and the network connectivity"
)

SignalHandler = Callable[[str, Any], Awaitable[None]]
ErrorHandler = Callable[[dict[str, Any]], Awaitable[None]]


class SignalingError(Exception):
    """The signaling service could not be used; str() says why and what to do.

    Callers tell failures apart by the attributes, never by the text: ``http_status`` is
    the status of a refused handshake, ``code`` the code of an error reply to a request.
    """

    def __init__(
        self, message: str, *, http_status: int | None = None, code: ErrorCode | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


class SignalingRefused(SignalingError):
    """The service answered but refused us (token, name, path)."""


class SignalingUnreachable(SignalingError):
    """The service could not be reached or the connection broke."""


def _refusal(url: str, status: int) -> SignalingRefused:
    if status == 401:
        return SignalingRefused(
            "the signaling service refused the token (HTTP 401); issue a new one with "
            "`homelab-p2p token issue` and check that it is signed with the service's secret",
            http_status=status,
        )
    if status == 403:
        return SignalingRefused(
            f"the signaling service refused {url} (HTTP 403); {GUIDE_URL_HINT}", http_status=status
        )
    if status == 429:
        return SignalingRefused(
            "the signaling service refused another connection (HTTP 429): too many are open at "
            "once from this address or with this token; end some (the client agent, on by "
            "default, keeps one per homelab) or raise the gateway's limits",
            http_status=status,
        )
    if status == 503:
        return SignalingRefused(
            "the signaling service is at its limit of open connections (HTTP 503); try again "
            "shortly, or raise the gateway's --max-connections",
            http_status=status,
        )
    return SignalingRefused(
        f"the signaling service answered HTTP {status} at {url}; {GUIDE_URL_HINT}",
        http_status=status,
    )


def refused_by_reply(reply: dict[str, Any]) -> SignalingRefused:
    """The error for an error reply to a request: its code, and its text for people."""
    return SignalingRefused(f"{reply.get('error')}: {reply.get('message')}", code=error_code(reply))


class Link:
    """One WebSocket connection to the signaling service."""

    def __init__(
        self,
        ws: ClientConnection,
        on_signal: SignalHandler,
        on_error: ErrorHandler,
        tickets: ReplyTickets | None = None,
    ) -> None:
        self.ws = ws
        self._tickets = tickets
        self.connection_id: str | None = None
        self._on_signal = on_signal
        self._on_error = on_error
        self._protocol = LinkProtocol()
        self._waiters: dict[int, asyncio.Future[Outcome]] = {}
        self._pace = TokenBucket(LINK_SEND_RATE, LINK_SEND_BURST)
        self._sending = asyncio.Lock()
        """One sender at a time: frames leave in the order the protocol queued them, even
        while one waits for its turn."""
        self._tasks = OwnedTasks(log, "Handling a signaling message")
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="signaling-reader")

    @classmethod
    async def open(
        cls,
        url: str,
        token: str,
        on_signal: SignalHandler,
        on_error: ErrorHandler,
        tickets: ReplyTickets | None = None,
    ) -> "Link":
        """A connection to signaling; a homelab passes ``tickets`` to keep the reply tickets
        that come with clients' signals."""
        separator = "&" if "?" in url else "?"
        try:
            ws = await connect(
                f"{url}{separator}token={token}",
                open_timeout=OPEN_TIMEOUT,
                compression=None,
                max_size=2**17,
                user_agent_header="homelab-p2p-bridge",
            )
        except InvalidStatus as exc:
            raise _refusal(url, exc.response.status_code) from None
        except InvalidURI:
            raise SignalingRefused(f"{url} is not a WebSocket URL; {GUIDE_URL_HINT}") from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            reason = (
                exc.strerror
                if isinstance(exc, OSError) and exc.strerror
                else str(exc) or type(exc).__name__
            )
            raise SignalingUnreachable(
                f"WebSocket connection failed: cannot reach {url}: {reason}; {GUIDE_URL_HINT}"
            ) from None
        return cls(ws, on_signal, on_error, tickets)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._protocol.receive_text(raw)
                self._deliver()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._protocol.connection_lost()
            self._deliver()

    def _deliver(self) -> None:
        """Act on what the protocol made of the frames: callbacks, log lines, replies."""
        for event in self._protocol.events_received():
            match event:
                case SignalReceived(sender, data, ticket):
                    if ticket is not None and self._tickets is not None:
                        self._tickets.remember(sender, ticket)
                    self._tasks.spawn(self._on_signal(sender, data))
                case ErrorReceived(message):
                    self._tasks.spawn(self._on_error(message))
                case PongReceived():
                    log.debug("Signaling: pong on %s", self.connection_id)
                case NotJson():
                    log.warning("Signaling sent something that is not JSON; ignored")
                case _:
                    waiter = self._waiters.get(event.request)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(event)

    async def send(self, message: dict[str, Any]) -> None:
        self._protocol.send(message)
        await self._transmit()

    async def _transmit(self) -> None:
        async with self._sending:
            for frame in self._protocol.data_to_send():
                wait = self._pace.reserve()
                if wait:
                    await asyncio.sleep(wait)
                try:
                    await self.ws.send(frame)
                except ConnectionClosed:
                    raise SignalingUnreachable("the signaling connection closed") from None

    async def request(
        self, message: dict[str, Any], match: Match, within: float = REPLY_TIMEOUT
    ) -> dict[str, Any]:
        """Send ``message`` and wait for the reply ``match`` accepts (or an error reply)."""
        loop = asyncio.get_running_loop()
        request = self._protocol.request(message, match, loop.time(), within)
        deadline = self._protocol.deadline(request)
        waiter: asyncio.Future[Outcome] = loop.create_future()
        self._waiters[request] = waiter
        try:
            await self._transmit()
            # asyncio.wait, not a timeout around the future: the protocol says whether a
            # reply or the deadline came first.
            await asyncio.wait([waiter], timeout=max(0.0, deadline - loop.time()))
            if not waiter.done():
                self._protocol.time_out(request)
                self._deliver()
            outcome = waiter.result()
        finally:
            del self._waiters[request]
            self._protocol.abandon(request)
        return _reply(outcome)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._tasks.cancel()


def _reply(outcome: Outcome) -> dict[str, Any]:
    """A request's reply, or the error that says why there is none."""
    match outcome:
        case Replied(_, message):
            return message
        case Refused(_, reply):
            raise refused_by_reply(reply)
        case TimedOut(_, within):
            raise SignalingUnreachable(f"no answer from the signaling service within {within:g} s")
        case Lost():
            raise SignalingUnreachable("the signaling connection closed")
