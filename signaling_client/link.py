"""One WebSocket connection to the signaling service, as the daemon and the client both use it.

``Link`` reads in a task of its own, hands relayed signals to a callback, and matches
replies (``registered``, ``connected``, errors) to requests.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from p2p_runtime.tasks import OwnedTasks

log = logging.getLogger("signaling_client")

OPEN_TIMEOUT = 10.0
REPLY_TIMEOUT = 10.0
ROTATION_GRACE = 10.0
"""How long a replaced connection keeps delivering what was already sent to it."""
GUIDE_URL_HINT = (
    "verify the WebSocket URL (wss://<api-id>.execute-api.<region>.amazonaws.com/prod, or "
    "ws://HOST:8765/prod for a local gateway) and the network connectivity"
)

SignalHandler = Callable[[str, Any], Awaitable[None]]
ErrorHandler = Callable[[dict[str, Any]], Awaitable[None]]


class SignalingError(Exception):
    """The signaling service could not be used; str() says why and what to do."""


class SignalingRefused(SignalingError):
    """The service answered but refused us (token, name, path)."""


class SignalingUnreachable(SignalingError):
    """The service could not be reached or the connection broke."""


def _refusal(url: str, status: int) -> SignalingRefused:
    if status == 401:
        return SignalingRefused(
            "the signaling service refused the token (HTTP 401); issue a new one with "
            "`homelab-p2p token issue` and check that it is signed with the service's secret"
        )
    if status == 403:
        return SignalingRefused(f"the signaling service refused {url} (HTTP 403); {GUIDE_URL_HINT}")
    return SignalingRefused(
        f"the signaling service answered HTTP {status} at {url}; {GUIDE_URL_HINT}"
    )


class Link:
    """One WebSocket connection to the signaling service."""

    def __init__(
        self, ws: ClientConnection, on_signal: SignalHandler, on_error: ErrorHandler
    ) -> None:
        self.ws = ws
        self.connection_id: str | None = None
        self._on_signal = on_signal
        self._on_error = on_error
        self._waiters: list[
            tuple[Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]]
        ] = []
        self._tasks = OwnedTasks(log, "Handling a signaling message")
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="signaling-reader")

    @classmethod
    async def open(
        cls, url: str, token: str, on_signal: SignalHandler, on_error: ErrorHandler
    ) -> "Link":
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
        return cls(ws, on_signal, on_error)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                try:
                    message = json.loads(raw)
                except (ValueError, RecursionError):
                    log.warning("Signaling sent something that is not JSON; ignored")
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for _, waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(SignalingUnreachable("the signaling connection closed"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        for match, waiter in list(self._waiters):
            if not waiter.done() and match(message):
                waiter.set_result(message)
                return
        if message.get("action") == "sendSignal" and isinstance(message.get("from"), str):
            self._tasks.spawn(self._on_signal(message["from"], message.get("data")))
        elif "error" in message or message.get("message") == "Internal server error":
            self._tasks.spawn(self._on_error(message))
        elif message.get("action") == "pong":
            log.debug("Signaling: pong on %s", self.connection_id)

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.ws.send(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed:
            raise SignalingUnreachable("the signaling connection closed") from None

    async def request(
        self,
        message: dict[str, Any],
        match: Callable[[dict[str, Any]], bool],
        within: float = REPLY_TIMEOUT,
    ) -> dict[str, Any]:
        """Send ``message`` and wait for the reply ``match`` accepts (or an error reply)."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (lambda m: match(m) or "error" in m, waiter)
        self._waiters.append(entry)
        try:
            await self.send(message)
            async with asyncio.timeout(within):
                reply = await waiter
        except TimeoutError:
            raise SignalingUnreachable(
                f"no answer from the signaling service within {within:g} s"
            ) from None
        finally:
            self._waiters.remove(entry)
        if "error" in reply:
            raise SignalingRefused(f"{reply.get('error')}: {reply.get('message')}")
        return reply

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._tasks.cancel()
