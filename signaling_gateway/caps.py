"""Caps on the gateway's connections: in all, per source address and per token.

A connection holds its place from its WebSocket upgrade request (so handshakes in progress
count) until its TCP connection ends, whatever ends it: a refused ``$connect``, a failed
handshake or a close. ``CountedConnection`` gives the place back in ``connection_lost``,
which asyncio calls exactly once for every connection.
"""

from collections import Counter
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection


class CapReached(Exception):
    """A new connection would cross a cap; ``why`` is one sentence, ``option`` raises the cap."""

    def __init__(self, status: HTTPStatus, why: str, option: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why
        self.option = option


class Place:
    """One connection's place under the caps."""

    def __init__(self, caps: "ConnectionCaps", source_ip: str, token: str | None) -> None:
        self._caps = caps
        self._source_ip = source_ip
        self.token = token
        self._released = False

    def release(self) -> None:
        """Give the place back; only the first call counts."""
        if not self._released:
            self._released = True
            self._caps.release(self._source_ip, self.token)


class ConnectionCaps:
    def __init__(self, total: int, per_ip: int, per_token: int) -> None:
        self._total_cap = total
        self._per_ip_cap = per_ip
        self._per_token_cap = per_token
        self._total = 0
        self._per_ip: Counter[str] = Counter()
        self._per_token: Counter[str] = Counter()

    @property
    def in_use(self) -> int:
        return self._total

    def admit(self, source_ip: str, token: str | None) -> Place:
        """A place for one more connection; CapReached if it would cross a cap.

        ``token`` is the raw ``token`` query value, counted before anyone checks it.
        """
        if self._total >= self._total_cap:
            raise CapReached(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{self._total} connections are open, the most this gateway allows",
                "--max-connections",
            )
        if self._per_ip[source_ip] >= self._per_ip_cap:
            raise CapReached(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"{self._per_ip[source_ip]} connections from this address are open, "
                "the most allowed per address",
                "--max-connections-per-ip",
            )
        if token is not None and self._per_token[token] >= self._per_token_cap:
            raise CapReached(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"{self._per_token[token]} connections with this token are open, "
                "the most allowed per token",
                "--max-connections-per-token",
            )
        self._total += 1
        self._per_ip[source_ip] += 1
        if token is not None:
            self._per_token[token] += 1
        return Place(self, source_ip, token)

    def release(self, source_ip: str, token: str | None) -> None:
        """Called by ``Place.release`` only: a place is given back once."""
        self._total -= 1
        _decrement(self._per_ip, source_ip)
        if token is not None:
            _decrement(self._per_token, token)


def _decrement(counter: Counter[str], key: str) -> None:
    # Keys at zero are dropped: the counters hold the open connections' keys only.
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


class CountedConnection(ServerConnection):
    """A server connection that gives its place under the caps back when it ends."""

    _place: Place | None = None

    @property
    def token(self) -> str | None:
        """The raw ``token`` query value it was counted under, if any."""
        return self._place.token if self._place is not None else None

    def hold(self, place: Place) -> None:
        self._place = place
        if self.connection_lost_waiter.done():  # it ended before its request was handled
            place.release()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self._place is not None:
                self._place.release()
