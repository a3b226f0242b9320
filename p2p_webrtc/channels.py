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
sending what it already has: a stream that does not take the rest within
``FLUSH_TIMEOUT`` is reset instead, and a bridge that is cancelled (its peer went away)
resets its stream at once. Text messages on a byte-stream channel are control messages
from the far side (``{"error": ..., "message": ...}``), never stream data.

What a peer sends is held against the SCTP window as bytes plus ``MESSAGE_COST`` per
message, so tiny messages cannot multiply the memory a window allows. Each consumer also
has a limit of its own (``HELD_LIMIT``; the echo channel: ``ECHO_BACKLOG_LIMIT`` messages),
which only a peer that the window does not bound can reach: the channel is then closed.
"""

import asyncio
import contextlib
import json
import logging
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel

from p2p_webrtc import queued_messages, receive_window

log = logging.getLogger("p2p_webrtc.channels")

READ_SIZE = 16 * 1024
CHANNEL_HIGH_WATER = 1024 * 1024
CHANNEL_LOW_WATER = 256 * 1024
STREAM_HIGH_WATER = 256 * 1024
MESSAGE_COST = 256
"""What keeping one received message costs beyond its bytes (its object and queue entry)."""
HELD_LIMIT = 4 * 1024 * 1024
"""Most one channel's consumer holds for a slow reader (the window allows about 1.3 MiB)."""
FLUSH_TIMEOUT = 5.0
"""How long a closing bridge waits for its stream to take what is left."""
ECHO_BACKLOG_LIMIT = 8192
"""Messages waiting to be sent on a peer connection (all its channels: busy bridges keep up to
about 4,000) past which the echo channel closes."""


class HeldTooMuch(Exception):
    """A consumer would hold more than ``HELD_LIMIT`` for this channel."""


class WindowHold:
    """How many bytes one consumer keeps out of the SCTP receive window."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self._window = receive_window(channel)
        self._held = 0

    def set(self, amount: int) -> None:
        if amount > HELD_LIMIT:
            raise HeldTooMuch(f"it would hold {amount} bytes (at most {HELD_LIMIT})")
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


REFUSAL_LINGER = 5.0
"""Seconds a refused channel stays open for its peer to read why and close it."""


def refuse(channel: RTCDataChannel, error: str, message: str, *, at_open: bool = False) -> None:
    """Tell the far side why, then close the channel.

    A channel refused as it opens (``at_open``: no such service, not in the credential,
    too many channels) is left for the peer to close once it has read why: closing at once
    could lose the message, the stream reset being acted on before the message it follows
    (seen with aiortc and Chromium under load). A peer that does not close it is closed
    after ``REFUSAL_LINGER`` seconds. A channel refused later (overflow, bad request) is
    closed at once: its peer broke the rules, and the close still waits behind its queue.
    """
    if channel.readyState != "open":
        return
    channel.send(control_message(error, message))
    if at_open:
        asyncio.get_running_loop().call_later(REFUSAL_LINGER, channel.close)
    else:
        channel.close()


def parse_control(message: str) -> tuple[str, str]:
    try:
        parsed = json.loads(message)
    except ValueError:
        return "protocol_error", message[:200]
    if not isinstance(parsed, dict):
        return "protocol_error", message[:200]
    return str(parsed.get("error", "error")), str(parsed.get("message", ""))


def held_size(message: str | bytes) -> int:
    """What keeping ``message`` costs: its object plus ``MESSAGE_COST``."""
    return sys.getsizeof(message) + MESSAGE_COST


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
        self.reset: str | None = None
        """Why the stream's connection was reset instead of closed, if it was."""
        self.overflow: str | None = None
        """Why the bridge ended early because the far side ignored flow control, if it did."""
        self._on_control = on_control
        self._pending: deque[bytes] = deque()
        self._pending_size = 0
        self._unwritten: list[bytes] = []
        self._unwritten_bytes = 0
        self._writer: asyncio.StreamWriter | None = None
        self._hold = WindowHold(channel)
        self._drainer: asyncio.Task[None] | None = None
        self._can_send = asyncio.Event()
        self._can_send.set()
        self._ended = asyncio.Event()
        """The channel closed, or the bridge must end."""
        channel.bufferedAmountLowThreshold = CHANNEL_LOW_WATER
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._can_send.set)
        channel.on("close", self._ended.set)
        if channel.readyState in ("closing", "closed"):
            self._ended.set()

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            error, text = parse_control(message)
            if self._on_control is not None:
                # A client's bridge: a text message is the homelab's last word on it.
                self._on_control(error, text)
                self.channel.close()
            return
        if self.overflow is not None:
            return
        self.bytes_to_stream += len(message)
        try:
            if self._writer is None:
                self._pending.append(message)
                self._pending_size += held_size(message)
                self._hold.set(self._pending_size)
            else:
                self._write(message)
        except HeldTooMuch as exc:
            self._end_overflowing(str(exc))

    def _end_overflowing(self, why: str) -> None:
        self.overflow = why
        refuse(self.channel, "overflow", f"the homelab's end of this channel {why}")
        self._ended.set()

    def _held_now(self) -> int:
        assert self._writer is not None
        unwritten = self._unwritten_bytes + MESSAGE_COST * len(self._unwritten)
        return self._writer.transport.get_write_buffer_size() + unwritten

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
        self._hold.set(self._held_now())

    def _write_unwritten(self) -> None:
        assert self._writer is not None
        unwritten = b"".join(self._unwritten)
        self._unwritten.clear()
        self._unwritten_bytes = 0
        if unwritten and not self._writer.is_closing():
            self._writer.write(unwritten)
            self._sync_hold()

    def _sync_hold(self) -> None:
        held = self._held_now()
        self._hold.set(held)
        if held > 0 and self._drainer is None:
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
        """Bridge until one side ends, then end the other; returns when both are done.

        Cancelled (its peer went away), it resets the stream's connection at once.
        """
        writer.transport.set_write_buffer_limits(high=STREAM_HIGH_WATER)
        self._writer = writer
        pump = asyncio.create_task(self._stream_to_channel(reader))
        ended = asyncio.create_task(self._ended.wait())
        try:
            pending, self._pending, self._pending_size = self._pending, deque(), 0
            for message in pending:
                self._write(message)  # never more than was held for them already
            await asyncio.wait({pump, ended}, return_when=asyncio.FIRST_COMPLETED)
            await self._finish(writer)
        except asyncio.CancelledError:
            if untaken := writer.transport.get_write_buffer_size():
                self.reset = f"had not taken {untaken} bytes when its peer went away"
            raise
        finally:
            for task in (pump, ended, self._drainer):
                if task is not None:
                    task.cancel()
            await asyncio.gather(pump, ended, return_exceptions=True)
            _reset_unless_closed(writer.transport)
            self._hold.clear()

    def discard(self) -> None:
        """The stream could not be opened: what was kept for it is let go."""
        self._pending.clear()
        self._pending_size = 0
        self._hold.clear()

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
        """Close the channel, then give the stream ``FLUSH_TIMEOUT`` to take the rest."""
        if self.channel.readyState == "open":
            self.channel.close()  # aiortc sends what is queued before it resets the stream
        self._write_unwritten()
        # drain() waits only until the buffer is down to its low-water mark, and not at all
        # below the high one: with both marks at zero it waits until the stream took it all.
        writer.transport.set_write_buffer_limits(high=0)
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await writer.drain()
        if untaken := writer.transport.get_write_buffer_size():
            self.reset = f"did not take the last {untaken} bytes within {FLUSH_TIMEOUT:g} s"
            return  # run() resets it
        if writer.is_closing():
            return
        writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await writer.wait_closed()


def _reset_unless_closed(transport: asyncio.WriteTransport) -> None:
    """Reset a stream that still holds bytes or is still open: nothing is left to send after
    ``_finish``, and a cancelled bridge drops what is left. One closed with nothing left is
    left alone (a closed pipe transport cannot even be aborted: it has let go of its loop)."""
    if not transport.is_closing() or transport.get_write_buffer_size():
        transport.abort()


class EchoChannel:
    """The ``echo`` service: every message comes back as it came, for diagnostics.

    A peer that sends faster than it takes the echoes back is bounded by the window (the
    bytes it has not taken back count against it) and by ``ECHO_BACKLOG_LIMIT`` messages
    waiting to be sent, past which the channel stops echoing and is closed (the close, like
    the control message before it, waits behind what is queued).
    """

    def __init__(self, channel: RTCDataChannel, on_overflow: Callable[[str], None]) -> None:
        self._channel = channel
        self._hold = WindowHold(channel)
        self._on_overflow = on_overflow
        channel.bufferedAmountLowThreshold = CHANNEL_LOW_WATER
        channel.on("message", self._echo)
        channel.on("bufferedamountlow", self._sync)
        channel.on("close", self._hold.clear)

    def _echo(self, message: Any) -> None:
        if self._channel.readyState != "open":
            return
        if queued_messages(self._channel) >= ECHO_BACKLOG_LIMIT:
            why = f"has {ECHO_BACKLOG_LIMIT} echoes waiting to be sent"
            self._on_overflow(why)
            self._hold.clear()
            refuse(self._channel, "overflow", f"the echo channel {why}: read them first")
            return
        self._channel.send(message)
        self._sync()

    def _sync(self) -> None:
        # What the far side does not take back counts against the window it sends into.
        self._hold.set(max(0, self._channel.bufferedAmount - CHANNEL_HIGH_WATER))


class MessageChannel:
    """A data channel read as a queue of messages, flow-controlled both ways.

    Received messages count against the SCTP window (``held_size``) until ``receive`` takes
    them; ``send`` waits while the channel holds more than ``CHANNEL_HIGH_WATER`` unsent
    bytes. A peer that the window does not bound is stopped at ``HELD_LIMIT``: the channel
    closes with an ``overflow`` control message and ``receive`` returns None.
    """

    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        self.overflow: str | None = None
        self._messages: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._queued = 0
        self._hold = WindowHold(channel)
        self._can_send = asyncio.Event()
        self._can_send.set()
        self._closed = asyncio.Event()
        channel.bufferedAmountLowThreshold = CHANNEL_LOW_WATER
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._can_send.set)
        channel.on("close", self._on_close)

    def _on_close(self) -> None:
        self._messages.put_nowait(None)
        self._can_send.set()  # a sender waiting for room finds the channel closed
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once the channel has closed (either end closed it)."""
        await self._closed.wait()

    def _on_message(self, message: str | bytes) -> None:
        if self.overflow is not None:
            return
        try:
            self._hold.set(self._queued + held_size(message))
        except HeldTooMuch as exc:
            self.overflow = str(exc)
            refuse(self.channel, "overflow", f"the homelab's end of this channel {exc}")
            self._messages.put_nowait(None)
            return
        self._queued += held_size(message)
        self._messages.put_nowait(message)

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the channel has closed."""
        message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)  # closed stays closed for later calls
        else:
            self._queued -= held_size(message)
            self._hold.set(self._queued)
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
