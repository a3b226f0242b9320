"""Everything the gateway writes to a client connection, without ever waiting for it to read.

websockets' ``send()`` waits for the socket to drain once a connection's write buffer is over
its write limit, so one client that never reads would hold whoever sends to it (a
management API request, and the handler thread behind it). Here a message that would take a
connection's unsent bytes over ``max_send_buffer`` is not sent: the connection is closed
with 1008 instead. The server's write limit sits above ``max_send_buffer`` (see
``write_limit``), so ``send()`` never has to wait. Closes run in tasks of their own with a
deadline, so no caller waits on a closing handshake either.
"""

import asyncio
import logging
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from p2p_runtime.tasks import OwnedTasks
from signaling_gateway.connections import LiveConnection

log = logging.getLogger("signaling_gateway")

NOT_READING = 1008
"""Close code (policy violation) for a connection that does not read its messages."""
NOT_READING_REASON = "It does not read its messages"
WRITE_HEADROOM = 4096
"""Write buffer room above max_send_buffer for frame headers and the close frame."""
SEND_TIMEOUT = 1.0
"""Safety net: below the write limit ``send()`` returns at once."""


def write_limit(max_send_buffer: int) -> int:
    """The websockets ``write_limit`` for connections written through a ConnectionWriter."""
    return max_send_buffer + WRITE_HEADROOM


class ConnectionWriter:
    def __init__(
        self,
        max_send_buffer: int,
        close_timeout: float,
        on_closing: Callable[[LiveConnection], None] = lambda _: None,
    ) -> None:
        """``on_closing`` learns of each connection the writer starts to close."""
        self._max_send_buffer = max_send_buffer
        self._on_closing = on_closing
        self._close_deadline = close_timeout + 1.0  # websockets' own timeout goes first
        self._closing = OwnedTasks(log, "Closing a connection")

    async def send(self, live: LiveConnection, payload: bytes, text: bool = True) -> bool:
        """Queue ``payload`` for ``live`` (a text frame unless ``text`` is False).

        False if the connection is closed or closing, or if it holds too many unsent bytes
        already: then it is closed with 1008.
        """
        websocket = live.websocket
        if live.closing or websocket.state is not State.OPEN:
            return False  # send() would wait for the closing handshake
        unsent = websocket.transport.get_write_buffer_size() + len(payload)
        if unsent > self._max_send_buffer:
            self._close_not_reading(live, unsent)
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await websocket.send(payload, text=text)
        except ConnectionClosed:
            return False
        except TimeoutError:
            self._close_not_reading(live, websocket.transport.get_write_buffer_size())
            return False
        return True

    def close(self, live: LiveConnection, code: int, reason: str) -> bool:
        """Start closing ``live`` in a task of its own; False if it is closing already."""
        if live.closing:
            return False
        live.closing = True
        self._on_closing(live)
        self._closing.spawn(self._close(live, code, reason), name=f"close-{live.connection_id}")
        return True

    async def wait_closed(self) -> None:
        """Wait for every close started so far."""
        await self._closing.wait()

    async def _close(self, live: LiveConnection, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self._close_deadline):
                await live.websocket.close(code, reason)
        except TimeoutError:
            # The close frame did not get through (its socket does not drain): drop it.
            live.websocket.transport.abort()

    def _close_not_reading(self, live: LiveConnection, unsent: int) -> None:
        if live.closing:
            return
        log.warning(
            "Closing connection %s with 1008: it does not read its messages (%d bytes unsent, "
            "more than --max-send-buffer %d)",
            live.connection_id,
            unsent,
            self._max_send_buffer,
        )
        self.close(live, NOT_READING, NOT_READING_REASON)
