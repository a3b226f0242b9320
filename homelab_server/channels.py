"""Data channels as byte streams: a TCP socket (or stdin/stdout) bridged to an RTCDataChannel.

Memory stays bounded whatever the speeds, in both directions:

- stream to channel: reads of at most 16 KiB, and no reading while the channel holds more
  than ``CHANNEL_HIGH_WATER`` unsent bytes (reading resumes on ``bufferedamountlow``);
- channel to stream: bytes the stream has not accepted yet are held against the SCTP
  receive window (webrtc/sctp.py), so the far sender slows down when the near reader does.

Per-message costs are spread without adding delay: each read takes everything the stream
has buffered, up to 16 KiB, into one message (SCTP carries at most 1,200 bytes a packet,
and aiortc never bundles, so small messages cost nearly as much as full ones), and the
messages that arrive in one loop step reach the stream in one write.

A data channel cannot be half-closed, so when either side ends, the bridge ends both, after
sending what it already has. Text messages on a byte-stream channel are control messages
from the far side (``{"error": ..., "message": ...}``), never stream data.
"""

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel

from homelab_server.webrtc import receive_window

log = logging.getLogger("homelab_server.channels")

READ_SIZE = 16 * 1024
CHANNEL_HIGH_WATER = 1024 * 1024
CHANNEL_LOW_WATER = 256 * 1024
STREAM_HIGH_WATER = 256 * 1024


class WindowHold:
    """How many bytes one consumer keeps out of the SCTP receive window."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self._window = receive_window(channel)
        self._held = 0

    def set(self, amount: int) -> None:
        if self._window is not None:
            if amount > self._held:
                self._window.hold(amount - self._held)
            elif amount < self._held:
                self._window.release(self._held - amount)
        self._held = amount

    def clear(self) -> None:
        self.set(0)


def control_message(error: str, message: str) -> str:
    """A text message telling the far side why a channel ends."""
    return json.dumps({"error": error, "message": message})


def parse_control(message: str) -> tuple[str, str]:
    try:
        parsed = json.loads(message)
    except ValueError:
        return "protocol_error", message[:200]
    if not isinstance(parsed, dict):
        return "protocol_error", message[:200]
    return str(parsed.get("error", "error")), str(parsed.get("message", ""))


class ChannelBridge:
    """Copies bytes between ``channel`` and a stream until either ends.

    Listening starts at construction, so messages that arrive while the stream is still
    being opened are kept (and held against the window) until ``run`` gets the stream.
    """

    def __init__(
        self, channel: RTCDataChannel, on_control: Callable[[str, str], None] | None = None
    ) -> None:
        self.channel = channel
        self.bytes_to_stream = 0
        self.bytes_to_channel = 0
        self._on_control = on_control
        self._pending: deque[bytes] = deque()
        self._unwritten: list[bytes] = []
        self._unwritten_bytes = 0
        self._writer: asyncio.StreamWriter | None = None
        self._hold = WindowHold(channel)
        self._drainer: asyncio.Task[None] | None = None
        self._can_send = asyncio.Event()
        self._can_send.set()
        self._channel_closed = asyncio.Event()
        channel.bufferedAmountLowThreshold = CHANNEL_LOW_WATER
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._can_send.set)
        channel.on("close", self._channel_closed.set)
        if channel.readyState in ("closing", "closed"):
            self._channel_closed.set()

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            error, text = parse_control(message)
            if self._on_control is not None:
                self._on_control(error, text)
            return
        self.bytes_to_stream += len(message)
        if self._writer is None:
            self._pending.append(message)
            self._hold.set(sum(len(m) for m in self._pending))
            return
        self._write(message)

    def _write(self, data: bytes) -> None:
        assert self._writer is not None
        if self._writer.is_closing():
            return
        # Messages that arrive in one loop step (a batch of datagrams) go to the stream in
        # one write: one system call instead of one per message.
        if not self._unwritten:
            asyncio.get_running_loop().call_soon(self._write_unwritten)
        self._unwritten.append(data)
        self._unwritten_bytes += len(data)
        self._hold.set(self._writer.transport.get_write_buffer_size() + self._unwritten_bytes)

    def _write_unwritten(self) -> None:
        assert self._writer is not None
        unwritten = b"".join(self._unwritten)
        self._unwritten.clear()
        self._unwritten_bytes = 0
        if unwritten and not self._writer.is_closing():
            self._writer.write(unwritten)
            self._sync_hold()

    def _sync_hold(self) -> None:
        assert self._writer is not None
        buffered = self._writer.transport.get_write_buffer_size() + self._unwritten_bytes
        self._hold.set(buffered)
        if buffered > 0 and self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self._writer is not None
        try:
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
        finally:
            self._drainer = None
        if not self._writer.is_closing():
            self._sync_hold()

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Bridge until one side ends, then end the other; returns when both are done."""
        writer.transport.set_write_buffer_limits(high=STREAM_HIGH_WATER)
        self._writer = writer
        while self._pending:
            self._write(self._pending.popleft())
        pump = asyncio.create_task(self._stream_to_channel(reader))
        ended = asyncio.create_task(self._channel_closed.wait())
        try:
            await asyncio.wait({pump, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.cancel()
            ended.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        await self._finish(writer)

    async def _stream_to_channel(self, reader: asyncio.StreamReader) -> None:
        while True:
            if self.channel.bufferedAmount > CHANNEL_HIGH_WATER:
                self._can_send.clear()
                await self._can_send.wait()
            try:
                data = await reader.read(READ_SIZE)
            except ConnectionError:
                return
            if not data or self.channel.readyState != "open":
                return
            self.channel.send(data)
            self.bytes_to_channel += len(data)

    async def _finish(self, writer: asyncio.StreamWriter) -> None:
        if self.channel.readyState == "open":
            self.channel.close()  # aiortc sends what is queued before it resets the stream
        self._write_unwritten()
        with contextlib.suppress(ConnectionError, RuntimeError):
            if not writer.is_closing():
                await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await writer.wait_closed()
        if self._drainer is not None:
            self._drainer.cancel()
        self._hold.clear()


class EchoChannel:
    """The ``echo`` service: every message comes back as it came, for diagnostics."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        self._hold = WindowHold(channel)
        channel.bufferedAmountLowThreshold = CHANNEL_LOW_WATER
        channel.on("message", self._echo)
        channel.on("bufferedamountlow", self._sync)
        channel.on("close", self._hold.clear)

    def _echo(self, message: Any) -> None:
        if self._channel.readyState == "open":
            self._channel.send(message)
            self._sync()

    def _sync(self) -> None:
        # What the far side does not take back counts against the window it sends into.
        self._hold.set(max(0, self._channel.bufferedAmount - CHANNEL_HIGH_WATER))


class MessageChannel:
    """A data channel read as a queue of messages, flow-controlled both ways.

    Received bytes count against the SCTP window until ``receive`` takes them; ``send``
    waits while the channel holds more than ``CHANNEL_HIGH_WATER`` unsent bytes.
    """

    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        self._messages: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._queued = 0
        self._hold = WindowHold(channel)
        self._can_send = asyncio.Event()
        self._can_send.set()
        channel.bufferedAmountLowThreshold = CHANNEL_LOW_WATER
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._can_send.set)
        channel.on("close", lambda: self._messages.put_nowait(None))

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._queued += len(message)
            self._hold.set(self._queued)
        self._messages.put_nowait(message)

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the channel has closed."""
        message = await self._messages.get()
        if isinstance(message, bytes):
            self._queued -= len(message)
            self._hold.set(self._queued)
        elif message is None:
            self._messages.put_nowait(None)  # closed stays closed for later calls
        return message

    async def send(self, message: str | bytes) -> None:
        if self.channel.bufferedAmount > CHANNEL_HIGH_WATER:
            self._can_send.clear()
            await self._can_send.wait()
        if self.channel.readyState != "open":
            raise ConnectionError("the data channel closed")
        self.channel.send(message)

    def close(self) -> None:
        self._hold.clear()
        if self.channel.readyState == "open":
            self.channel.close()
