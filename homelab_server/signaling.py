"""Talking to the signaling service: one WebSocket ``Link``, and the homelab's registration.

``Link`` is one connection (either side): it reads in a task of its own, hands relayed
signals to a callback, and matches replies (``registered``, ``connected``, errors) to
requests. ``HomelabSignaling`` keeps a homelab registered under its name: it connects with
its token, registers, sends a data-frame ping (API Gateway closes connections idle for 10
minutes), reconnects with capped exponential backoff and jitter, and replaces its
connection before the maximum age by registering a new one before closing the old one, so
that no offer is lost.
"""

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from homelab_server.config import ConfigError, DaemonConfig
from homelab_server.sdnotify import notify
from homelab_server.tasks import OwnedTasks

log = logging.getLogger("homelab_server.signaling")

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


def backoff_delay(attempt: int, cap: float, base: float = 0.5) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not crypto


class HomelabSignaling:
    """Keeps the homelab registered under its name, whatever happens to the connection."""

    def __init__(
        self,
        config: DaemonConfig,
        on_signal: SignalHandler,
        on_error: ErrorHandler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_signal = on_signal
        self._on_error = on_error
        self._clock = clock
        self._active: Link | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.registered = asyncio.Event()
        self.disconnected = asyncio.Event()
        """Set while there is no registered connection (cleared again on registration)."""
        self.disconnected.set()

    @property
    def connection_id(self) -> str | None:
        return self._active.connection_id if self._active else None

    async def send_signal(self, to: str, data: Any) -> bool:
        """Relay ``data`` to ``to`` through the current connection; False if there is none."""
        link = self._active
        if link is None:
            log.warning("Signaling: not connected; a signal to %s was dropped", to)
            return False
        try:
            await link.send({"action": "sendSignal", "to": to, "data": data})
        except SignalingError:
            log.warning("Signaling: the connection closed; a signal to %s was dropped", to)
            return False
        return True

    async def _register(self) -> Link:
        config = self._config
        try:
            token = config.read_token()
        except ConfigError as exc:
            raise SignalingRefused(str(exc)) from None
        log.info("Signaling: connecting to %s", config.signaling_url)
        link = await Link.open(config.signaling_url, token, self._on_signal, self._on_error)
        log.info("WebSocket connected to %s", config.signaling_url)
        try:
            reply = await link.request(
                {"action": "register", "name": config.name, "token": token},
                lambda m: m.get("action") == "registered",
            )
        except SignalingError:
            await link.close()
            raise
        link.connection_id = str(reply.get("connectionId"))
        log.info("Registered as %r: connection id %s", config.name, link.connection_id)
        notify(STATUS=f"Registered as {config.name!r} (connection id {link.connection_id})")
        return link

    async def run(self) -> None:
        """Connect, register, serve; reconnect and rotate forever (until cancelled)."""
        attempt = 0
        try:
            while True:
                try:
                    link = await self._register()
                except SignalingError as exc:
                    delay = backoff_delay(attempt, self._config.reconnect_max_delay)
                    attempt += 1
                    log.warning("Signaling: %s; retrying in %.1f s", exc, delay)
                    notify(STATUS=f"Not registered: {exc}"[:400])
                    await asyncio.sleep(delay)
                    continue
                attempt = 0
                await self._serve(link)
        finally:
            await self._shutdown()

    async def _serve(self, link: Link) -> None:
        """Use ``link`` until it closes; replace it before it gets too old."""
        self._active = link
        self.registered.set()
        self.disconnected.clear()
        rotate_at = self._clock() + self._config.max_connection_age
        failed_replacements = 0
        while True:
            if await self._keep_alive(link, rotate_at) == "closed":
                log.warning(
                    "Signaling: connection %s closed (code %s); reconnecting",
                    link.connection_id,
                    link.ws.close_code,
                )
                self._active = None
                self.registered.clear()
                self.disconnected.set()
                await link.close()
                return
            log.info(
                "Signaling: connection %s is due for replacement; opening the next",
                link.connection_id,
            )
            try:
                replacement = await self._register()
            except SignalingError as exc:
                # Keep the old connection and try again soon: it still has until the 2 h cap.
                retry = max(
                    1.0, backoff_delay(failed_replacements, self._config.reconnect_max_delay)
                )
                failed_replacements += 1
                log.warning(
                    "Signaling: the replacement failed (%s); keeping %s, trying again in %.1f s",
                    exc,
                    link.connection_id,
                    retry,
                )
                rotate_at = self._clock() + retry
                continue
            failed_replacements = 0
            self._active = replacement
            log.info(
                "Signaling: now on connection %s; closing %s in %g s",
                replacement.connection_id,
                link.connection_id,
                ROTATION_GRACE,
            )
            self._retire(link)
            link = replacement
            rotate_at = self._clock() + self._config.max_connection_age

    async def _keep_alive(self, link: Link, rotate_at: float) -> str:
        """Ping every ``ping_interval`` until the link closes ("closed") or is due ("rotate")."""
        while True:
            now = self._clock()
            if now >= rotate_at:
                return "rotate"
            wait = min(self._config.ping_interval, rotate_at - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await link.closed.wait()
            if link.closed.is_set():
                return "closed"
            if self._clock() < rotate_at:
                with contextlib.suppress(SignalingError):
                    await link.send({"action": "ping"})

    def _retire(self, link: Link) -> None:
        async def retire() -> None:
            await asyncio.sleep(ROTATION_GRACE)
            await link.close()
            log.info("Signaling: closed the replaced connection %s", link.connection_id)

        task = asyncio.create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _shutdown(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._active is not None:
            await self._active.close()
            self._active = None
