"""The homelab's registration: ``HomelabSignaling`` keeps a homelab registered under its name.

It connects with its token, registers, sends a data-frame ping (API Gateway closes
connections idle for 10 minutes), reconnects with capped exponential backoff and jitter, and
replaces its connection before the maximum age by registering a new one before closing the
old one, so that no offer is lost. ``p2p_protocol.session.HomelabSession`` makes those
decisions without I/O; this is its asyncio adapter: it opens, watches and closes the links,
sends the pings, waits until the session's next deadline and writes the log lines.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from homelab_server import metrics
from homelab_server.config import DaemonConfig
from p2p_protocol.session import (
    Backoff,
    CloseReplaced,
    Connect,
    Disconnected,
    HomelabSession,
    Ping,
    Registered,
    Replaced,
    ReplacementFailed,
    SessionAction,
    backoff_delay,
)
from p2p_runtime.configfile import ConfigError
from p2p_runtime.sdnotify import notify
from p2p_runtime.tasks import OwnedTasks
from signaling_client.link import (
    ErrorHandler,
    Link,
    SignalHandler,
    SignalingError,
    SignalingRefused,
)
from signaling_client.tickets import ReplyTickets

__all__ = ["HomelabSignaling", "backoff_delay"]

log = logging.getLogger("homelab_server.signaling")


STUCK_AFTER = 60.0
"""Seconds past its next deadline (a ping, a rotation, a retry) a session counts as hung."""


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
        self._session = HomelabSession(
            config.ping_interval, config.max_connection_age, config.reconnect_max_delay
        )
        self._links: dict[int, Link] = {}  # the session's connection numbers
        self._opening: tuple[int, asyncio.Task[Link]] | None = None
        self._watching: tuple[int, asyncio.Task[Any]] | None = None  # the active link's close
        self._retiring = OwnedTasks(log, "Closing a replaced signaling connection")
        self._tickets = ReplyTickets()
        """Signaling's tickets for answering each client, kept across connections."""
        self.registered = asyncio.Event()
        self.disconnected = asyncio.Event()
        """Set while there is no registered connection (cleared again on registration)."""
        self.disconnected.set()
        self._registered_at: float | None = None
        self._last_problem: str | None = None
        self._replacements = 0

    def health(self) -> str | None:
        """None while the session keeps to its schedule; else how late it is (a hang)."""
        deadline = self._session.next_deadline()
        late = None if deadline is None else self._clock() - deadline
        if late is not None and late > STUCK_AFTER:
            return f"the signaling session is {late:.0f} s late on its next step"
        return None

    def describe(self) -> dict[str, Any]:
        """The registration as ``homelab-p2p status`` shows it."""
        registered = not self.disconnected.is_set()
        since = self._registered_at if registered else None
        return {
            "url": self._config.signaling_url,
            "registered": registered,
            "connection_id": self.connection_id,
            "registered_seconds": None if since is None else round(self._clock() - since, 1),
            "replacements": self._replacements,
            "last_problem": self._last_problem,
        }

    @property
    def connection_id(self) -> str | None:
        return self._active.connection_id if self._active else None

    @property
    def _active(self) -> Link | None:
        """The link signals go through: the session's active connection."""
        active = self._session.active
        return None if active is None else self._links.get(active)

    async def send_signal(self, to: str, data: Any) -> bool:
        """Relay ``data`` to ``to`` through the current connection; False if there is none."""
        link = self._active
        if link is None:
            log.warning("Signaling: not connected; a signal to %s was dropped", to)
            return False
        message = {"action": "sendSignal", "to": to, "data": data}
        ticket = self._tickets.for_client(to)
        if ticket is not None:
            message["ticket"] = ticket
        try:
            await link.send(message)
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
        link = await Link.open(
            config.signaling_url, token, self._on_signal, self._on_error, self._tickets
        )
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
        try:
            actions = self._session.start()
            while True:
                await self._perform(actions)
                actions = await self._next_event()
        finally:
            await self._shutdown()

    async def _next_event(self) -> list[SessionAction]:
        """Wait for what comes first (a registration's outcome, the active link closing, the
        session's next deadline) and tell the session; it answers with what to do."""
        tasks = [task for _, task in filter(None, (self._opening, self._watching))]
        deadline = self._session.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(timeout or 0.0)
        now = self._clock()
        if self._opening is not None and self._opening[1].done():
            conn, opening = self._opening
            self._opening = None
            try:
                self._links[conn] = opening.result()
            except SignalingError as exc:
                return self._session.register_failed(conn, now, str(exc))
            return self._session.registered(conn, now)
        if self._watching is not None and self._watching[1].done():
            conn, _ = self._watching
            self._watching = None
            return self._session.connection_closed(conn, now)
        return self._session.timer(now)

    async def _perform(self, actions: list[SessionAction]) -> None:
        for action in actions:
            match action:
                case Connect(_, rotation=True):
                    log.info(
                        "Signaling: connection %s is due for replacement; opening the next",
                        self.connection_id,
                    )
                    self._open(action.conn)
                case Connect(conn):
                    self._open(conn)
                case Registered(conn):
                    self._use(conn)
                    self.registered.set()
                    self.disconnected.clear()
                    self._registered_at, self._last_problem = self._clock(), None
                    metrics.REGISTRATIONS.inc()
                case Replaced(new, old, grace):
                    self._use(new)
                    self._replacements += 1
                    metrics.ROTATIONS.inc()
                    log.info(
                        "Signaling: now on connection %s; closing %s in %g s",
                        self._links[new].connection_id,
                        self._links[old].connection_id,
                        grace,
                    )
                case Ping(conn):
                    # A failed ping shows as the link's close, and the session reconnects then.
                    with contextlib.suppress(SignalingError):
                        await self._links[conn].send({"action": "ping"})
                case CloseReplaced(conn):
                    self._close_replaced(self._links.pop(conn))
                case Disconnected(conn):
                    await self._disconnected(self._links.pop(conn))
                case Backoff(delay, reason):
                    self._last_problem = reason
                    metrics.SIGNALING_RETRIES.inc()
                    log.warning("Signaling: %s; retrying in %.1f s", reason, delay)
                    notify(STATUS=f"Not registered: {reason}"[:400])
                case ReplacementFailed(conn, retry, reason):
                    log.warning(
                        "Signaling: the replacement failed (%s); keeping %s, "
                        "trying again in %.1f s",
                        reason,
                        self._links[conn].connection_id,
                        retry,
                    )

    def _open(self, conn: int) -> None:
        self._opening = (conn, asyncio.create_task(self._register(), name="signaling-register"))

    def _use(self, conn: int) -> None:
        """Watch ``conn``, the link signals go through now (only the active link's close
        matters: a replaced one is closed at the end of its grace anyway)."""
        link = self._links[conn]
        if self._watching is not None:
            self._watching[1].cancel()
        self._watching = (conn, asyncio.create_task(link.closed.wait()))

    async def _disconnected(self, link: Link) -> None:
        log.warning(
            "Signaling: connection %s closed (code %s); reconnecting",
            link.connection_id,
            link.ws.close_code,
        )
        self.registered.clear()
        self.disconnected.set()
        await link.close()

    def _close_replaced(self, link: Link) -> None:
        # A task: a closing handshake may take seconds, and the active link must not wait.
        async def close() -> None:
            await link.close()
            log.info("Signaling: closed the replaced connection %s", link.connection_id)

        self._retiring.spawn(close())

    async def _shutdown(self) -> None:
        await self._retiring.cancel()
        tasks = [task for _, task in filter(None, (self._opening, self._watching))]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._opening = self._watching = None
        # The active link, and any replaced one still in its grace.
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()
