"""The signaling session's decisions, without I/O.

Two state machines that take events and answer with what to do, as websockets' ``Protocol``
does beside its ``asyncio`` client; ``signaling_client.link.Link`` and
``homelab_server.signaling.HomelabSignaling`` are their asyncio adapters:

- ``LinkProtocol``, one WebSocket connection: requests matched to their replies (or to an
  error reply, or timed out, or lost with the connection), and everything else sorted into
  relayed signals, unsolicited errors and pongs.
- ``HomelabSession``, the homelab's registration over a succession of connections: when to
  connect, how long to back off, when to ping, when to rotate (register the next connection
  before closing the old one, then close the old one after ``ROTATION_GRACE``).

Time comes in as numbers (seconds on one monotonic clock) and jitter from an injected
``uniform``, so both run in unit tests without sockets, sleeps or luck.
"""

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p2p_protocol.messages import is_internal_error

REPLY_TIMEOUT = 10.0
ROTATION_GRACE = 10.0
"""How long a replaced connection keeps delivering what was already sent to it."""
MIN_REPLACEMENT_RETRY = 1.0
"""A failed replacement is retried no sooner: the old connection still works meanwhile."""

Uniform = Callable[[float, float], float]
Match = Callable[[dict[str, Any]], bool]


def backoff_delay(
    attempt: int, cap: float, base: float = 0.5, uniform: Uniform = random.uniform
) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return uniform(0, min(cap, base * 2**attempt))


# One connection: what LinkProtocol reports (events_received).


@dataclass(frozen=True)
class RequestEvent:
    """What became of request ``request``; the subclasses say what."""

    request: int


@dataclass(frozen=True)
class Replied(RequestEvent):
    """The reply a request was waiting for."""

    message: dict[str, Any]


@dataclass(frozen=True)
class Refused(RequestEvent):
    """An error reply (``{"error": CODE, ...}``) to a request."""

    reply: dict[str, Any]


@dataclass(frozen=True)
class TimedOut(RequestEvent):
    within: float


class Lost(RequestEvent):
    """The connection closed before the reply came."""


@dataclass(frozen=True)
class SignalReceived:
    sender: str
    data: Any
    ticket: str | None = None
    """Signaling's reply ticket for the sender (only a homelab gets one)."""


@dataclass(frozen=True)
class MessageReceived:
    """A message no request was waiting for; the subclasses say which kind."""

    message: dict[str, Any]


class ErrorReceived(MessageReceived):
    """An error no request was waiting for (or API Gateway's "Internal server error")."""


class PongReceived(MessageReceived):
    """The answer to a keep-alive ping."""


@dataclass(frozen=True)
class NotJson:
    """A frame that is not JSON: ignored, but worth a log line."""


Outcome = Replied | Refused | TimedOut | Lost
LinkEvent = Outcome | SignalReceived | ErrorReceived | PongReceived | NotJson


@dataclass(frozen=True)
class _Pending:
    match: Match
    deadline: float
    within: float


class LinkProtocol:
    """One signaling connection's messages, in and out, without the connection.

    Feed it ``receive_text`` for each frame, ``time_out`` when a request's deadline passes and
    ``connection_lost`` at the end; send what ``data_to_send`` returns and act on what
    ``events_received`` returns.
    """

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}  # in request order: the oldest matches first
        self._next_request = 0
        self._frames: list[str] = []
        self._events: list[LinkEvent] = []

    def send(self, message: dict[str, Any]) -> None:
        self._frames.append(json.dumps(message, separators=(",", ":")))

    def request(
        self, message: dict[str, Any], match: Match, now: float, within: float = REPLY_TIMEOUT
    ) -> int:
        """Send ``message``; its outcome is the reply ``match`` accepts or any error reply."""
        self._next_request += 1
        self._pending[self._next_request] = _Pending(match, now + within, within)
        self.send(message)
        return self._next_request

    def deadline(self, request: int) -> float:
        """When ``request`` times out (the adapter then calls ``time_out``)."""
        return self._pending[request].deadline

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def time_out(self, request: int) -> None:
        """``request``'s deadline passed: it fails, unless its reply came first."""
        pending = self._pending.pop(request, None)
        if pending is not None:
            self._events.append(TimedOut(request, pending.within))

    def abandon(self, request: int) -> None:
        """Nobody waits for ``request`` any more (its sender failed or was cancelled)."""
        self._pending.pop(request, None)

    def receive_text(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            self._events.append(NotJson())
            return
        if isinstance(message, dict):
            self._dispatch(message)

    def connection_lost(self) -> None:
        """Every request still waiting fails: no reply can come any more."""
        self._events.extend(Lost(request) for request in self._pending)
        self._pending.clear()

    def data_to_send(self) -> list[str]:
        frames, self._frames = self._frames, []
        return frames

    def events_received(self) -> list[LinkEvent]:
        events, self._events = self._events, []
        return events

    def _dispatch(self, message: dict[str, Any]) -> None:
        for request, pending in self._pending.items():
            if pending.match(message) or "error" in message:
                del self._pending[request]
                refused = "error" in message
                self._events.append(
                    Refused(request, message) if refused else Replied(request, message)
                )
                return
        if message.get("action") == "sendSignal" and isinstance(message.get("from"), str):
            ticket = message.get("ticket")
            self._events.append(
                SignalReceived(
                    message["from"],
                    message.get("data"),
                    ticket if isinstance(ticket, str) else None,
                )
            )
        elif "error" in message or is_internal_error(message):
            self._events.append(ErrorReceived(message))
        elif message.get("action") == "pong":
            self._events.append(PongReceived(message))


# The homelab's registration: what HomelabSession tells its adapter to do. Connections are
# numbered by the session; the adapter keeps the number -> connection map.


@dataclass(frozen=True)
class ConnectionAction:
    """Something to do with connection ``conn``; the subclasses say what."""

    conn: int


@dataclass(frozen=True)
class Connect(ConnectionAction):
    """Open connection ``conn`` and register it; ``rotation``: it is to replace the active one."""

    rotation: bool


class Registered(ConnectionAction):
    """``conn`` is registered after a time without any: signals go through it now."""


@dataclass(frozen=True)
class Replaced:
    """``new`` is registered in place of ``old``, which is closed after ``grace`` seconds."""

    new: int
    old: int
    grace: float


class Ping(ConnectionAction):
    """Send a keep-alive ping on ``conn``."""


class CloseReplaced(ConnectionAction):
    """The grace of a replaced connection is over: close it."""


class Disconnected(ConnectionAction):
    """The active connection closed: there is none until the next ``Registered``."""


@dataclass(frozen=True)
class Backoff:
    """Registering failed (with no connection to fall back on): the next try in ``delay``."""

    delay: float
    reason: str


@dataclass(frozen=True)
class ReplacementFailed(ConnectionAction):
    """Registering a replacement failed: ``conn`` stays, the next try in ``retry``."""

    retry: float
    reason: str


SessionAction = (
    Connect
    | Registered
    | Replaced
    | Ping
    | CloseReplaced
    | Disconnected
    | Backoff
    | ReplacementFailed
)


class HomelabSession:
    """Keeps a homelab registered: connect, back off, ping, rotate, reconnect.

    Events: ``start``, ``registered``/``register_failed`` (the outcome of a ``Connect``),
    ``connection_closed`` and ``timer`` (the time now, at or after ``next_deadline``). Each
    returns the actions to take, in order. One ``Connect`` at a time; while it is under way
    the active connection is neither pinged nor replaced (the original sequence).
    """

    def __init__(
        self,
        ping_interval: float,
        max_connection_age: float,
        reconnect_max_delay: float,
        *,
        grace: float = ROTATION_GRACE,
        uniform: Uniform = random.uniform,
    ) -> None:
        self.ping_interval = ping_interval
        self.max_connection_age = max_connection_age
        self.reconnect_max_delay = reconnect_max_delay
        self.grace = grace
        self._uniform = uniform
        self._last_conn = 0
        self.active: int | None = None
        self.opening: int | None = None
        self._active_lost = False  # it closed while its replacement was being registered
        self._attempt = 0  # failed registrations since the last success (no connection)
        self._failed_replacements = 0
        self._retry_at: float | None = None
        self._rotate_at: float | None = None
        self._ping_at: float | None = None
        self._closing: dict[int, float] = {}  # replaced connection -> when to close it

    def start(self) -> list[SessionAction]:
        return [self._connect(rotation=False)]

    def registered(self, conn: int, now: float) -> list[SessionAction]:
        self._finish_opening(conn)
        old, self.active = self.active, conn
        self._active_lost = False
        self._attempt = self._failed_replacements = 0
        self._serve_from(now, self.max_connection_age)
        if old is None:
            return [Registered(conn)]
        self._closing[old] = now + self.grace
        return [Replaced(conn, old, self.grace)]

    def register_failed(self, conn: int, now: float, reason: str) -> list[SessionAction]:
        self._finish_opening(conn)
        if self.active is None:
            delay = self._backoff(self._attempt)
            self._attempt += 1
            self._retry_at = now + delay
            return [Backoff(delay, reason)]
        # Keep the old connection and try again soon: it still has until the 2 h cap.
        retry = max(MIN_REPLACEMENT_RETRY, self._backoff(self._failed_replacements))
        self._failed_replacements += 1
        self._serve_from(now, retry)
        actions: list[SessionAction] = [ReplacementFailed(self.active, retry, reason)]
        if self._active_lost:
            actions += self._lose(self.active)
        return actions

    def connection_closed(self, conn: int, now: float) -> list[SessionAction]:
        """``conn`` closed (by the other side or the network). Only the active one matters:
        a replaced one is closed at the end of its grace anyway."""
        if conn != self.active:
            return []
        if self.opening is not None:
            self._active_lost = True  # decided when the replacement's outcome is known
            return []
        return self._lose(conn)

    def timer(self, now: float) -> list[SessionAction]:
        actions: list[SessionAction] = []
        for conn, at in list(self._closing.items()):
            if at <= now:
                del self._closing[conn]
                actions.append(CloseReplaced(conn))
        if self.opening is not None:
            return actions
        if self.active is None:
            if self._retry_at is not None and self._retry_at <= now:
                self._retry_at = None
                actions.append(self._connect(rotation=False))
        elif self._rotate_at is not None and self._rotate_at <= now:
            actions.append(self._connect(rotation=True))
        elif self._ping_at is not None and self._ping_at <= now:
            self._ping_at = now + self.ping_interval
            actions.append(Ping(self.active))
        return actions

    def next_deadline(self) -> float | None:
        """When ``timer`` has something to do next (None: only an event can change things)."""
        deadlines = list(self._closing.values())
        if self.opening is None:
            timers = (self._retry_at, self._rotate_at, self._ping_at)
            deadlines += [t for t in timers if t is not None]
        return min(deadlines, default=None)

    def _connect(self, rotation: bool) -> Connect:
        self._last_conn += 1
        self.opening = self._last_conn
        return Connect(self._last_conn, rotation)

    def _finish_opening(self, conn: int) -> None:
        if conn != self.opening:
            raise ValueError(f"connection {conn} is not the one being registered")
        self.opening = None

    def _serve_from(self, now: float, rotate_in: float) -> None:
        self._rotate_at = now + rotate_in
        self._ping_at = now + self.ping_interval

    def _lose(self, conn: int) -> list[SessionAction]:
        # Registered a moment ago, so no backoff: reconnect at once (attempt 0 after that).
        self.active = None
        self._active_lost = False
        self._rotate_at = self._ping_at = None
        return [Disconnected(conn), self._connect(rotation=False)]

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.reconnect_max_delay, uniform=self._uniform)
