"""The gateway's open WebSocket connections, by connection id."""

import time
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection

from p2p_runtime.ratelimit import TokenBucket
from signaling_gateway.events import Caller


@dataclass(eq=False)
class LiveConnection:
    caller: Caller
    websocket: ServerConnection
    limiter: TokenBucket | None
    share: str = ""
    """Whose share of the handler pool its messages use: its token, else its address."""
    opened: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_epoch: float = field(default_factory=time.time)
    closing: bool = False
    """The gateway started closing it: it takes no more messages from the management API."""
    rate_limited_count: int = 0

    @property
    def connection_id(self) -> str:
        return self.caller.connection_id

    def touch(self) -> None:
        """A data frame arrived from the client: the idle timer starts again."""
        self.last_active = time.monotonic()
        self.last_active_epoch = time.time()


class ConnectionTable:
    """Connections that completed their handshake and have not closed yet.

    Only these can be posted to: like API Gateway, a connection whose ``$connect`` is still
    running, or that has closed, answers GoneException (the management API also treats one
    the gateway is closing as gone).
    """

    def __init__(self) -> None:
        self._by_id: dict[str, LiveConnection] = {}

    def add(self, connection: LiveConnection) -> None:
        self._by_id[connection.connection_id] = connection

    def remove(self, connection_id: str) -> None:
        self._by_id.pop(connection_id, None)

    def get(self, connection_id: str) -> LiveConnection | None:
        return self._by_id.get(connection_id)

    def snapshot(self) -> list[LiveConnection]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
