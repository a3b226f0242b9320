"""Frames between the gateway and its handler workers, over one socketpair per worker.

A frame is a 4-byte big-endian length and a pickled tuple whose first item names it. Both
ends are processes of the same gateway (the worker is forked from it), so pickle is safe
here; nothing from a client is ever unpickled, it only travels inside the tuples as str or
bytes. The worker's end is blocking (it runs one invocation at a time); the gateway's end
is an asyncio stream (``read_frame``).

Worker to gateway: ``("ready",)``, ``("result", seq, response)``, ``("post", id, data)``,
``("call", seq, op, args)``. Gateway to worker: ``("invoke", seq, event)``,
``("opened", id)``, ``("closed", id)``, ``("registered", name, id)``,
``("unregistered", name, id)``, ``("reply", seq, value)``.
"""

import asyncio
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 4 * 1024 * 1024
"""Far above the largest frame (a 128 KiB message, base64-encoded, in an event)."""

Frame = tuple[Any, ...]


class ChannelClosed(Exception):
    """The other end is gone (or sent something that is not a frame)."""


def encode_frame(frame: Frame) -> bytes:
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """The next frame from a worker; ChannelClosed when it has gone."""
    try:
        (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        if size > MAX_FRAME_BYTES:
            raise ChannelClosed(f"a frame of {size} bytes")
        frame = pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own worker
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ChannelClosed(str(exc) or type(exc).__name__) from None
    if not isinstance(frame, tuple) or not frame:
        raise ChannelClosed("a frame that is not a tuple")
    return frame


class BlockingChannel:
    """The worker's end: frames out are buffered until it is about to wait for input."""

    def __init__(self, sock: socket.socket, before_wait: Callable[[], None] = lambda: None) -> None:
        """``before_wait`` runs whenever the worker is about to wait for input (its log is
        flushed there: lines leave in one write per batch, not one per line)."""
        sock.setblocking(True)
        self._sock = sock
        self._before_wait = before_wait
        self._inbox = bytearray()
        self._read_to = 0
        """Where the next frame starts in ``_inbox`` (read frames are dropped in bulk)."""
        self._outbox = bytearray()

    def send(self, frame: Frame) -> None:
        self._outbox += encode_frame(frame)

    def flush(self) -> None:
        if self._outbox:
            try:
                self._sock.sendall(self._outbox)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None
            self._outbox.clear()

    def receive(self) -> Frame:
        """The next frame; what was sent goes out first, so the gateway never waits on it."""
        while True:
            frame = self._take_frame()
            if frame is not None:
                return frame
            self.flush()
            self._before_wait()
            try:
                chunk = self._sock.recv(262144)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None
            if not chunk:
                raise ChannelClosed("the gateway closed the channel")
            del self._inbox[: self._read_to]
            self._read_to = 0
            self._inbox += chunk

    def _take_frame(self) -> Frame | None:
        start = self._read_to
        if len(self._inbox) - start < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self._inbox, start)
        if size > MAX_FRAME_BYTES:
            raise ChannelClosed(f"a frame of {size} bytes")
        end = start + HEADER.size + size
        if len(self._inbox) < end:
            return None
        frame = pickle.loads(memoryview(self._inbox)[start + HEADER.size : end])  # noqa: S301
        self._read_to = end
        assert isinstance(frame, tuple)
        return frame
