"""The homelab's registration: ``HomelabSignaling`` keeps a homelab registered under its name.

It connects with its token, registers, sends a data-frame ping (API Gateway closes
connections idle for 10 minutes), reconnects with capped exponential backoff and jitter, and
replaces its connection before the maximum age by registering a new one before closing the
old one, so that no offer is lost.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from homelab_server.config import DaemonConfig
from p2p_runtime.configfile import ConfigError
from p2p_runtime.sdnotify import notify
from signaling_client.link import (
    ROTATION_GRACE,
    ErrorHandler,
    Link,
    SignalHandler,
    SignalingError,
    SignalingRefused,
)

log = logging.getLogger("homelab_server.signaling")


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
