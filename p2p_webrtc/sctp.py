"""SCTP flow control for data channels, on top of aiortc's RTCSctpTransport.

aiortc delivers every message to the application as it arrives and advertises a receive
window that counts only data still being reassembled; as a sender it ignores the window
its peer advertises. A fast sender and a slow consumer (a TCP client that reads slowly)
would therefore pile data up in memory without bound. ``FlowControlledSctpTransport`` adds
the two halves of SCTP's own flow control (RFC 9260 section 6):

- receiving: bytes the application still holds (``hold``/``release``) count against the
  advertised window, and a SACK announces the window when it opens again;
- sending: a message enters the outbound queue only while the bytes in flight plus the
  message fit in the peer's advertised window, with one probe per retransmission timeout
  when the window is closed.

Browsers (usrsctp) do both already, so a browser peer is flow-controlled too. A peer that
ignores the window (stock aiortc does) or crafts packets to grow what is kept gets its data
dropped, unacknowledged, as RFC 9260 section 6.2 says, so memory stays bounded per peer:

- data beyond the advertised window, past ``WINDOW_SLACK`` (room for one probe message):
  a sender that ignores the window, which it must slow down for;
- more than ``MAX_BUFFERED_CHUNKS`` chunks waiting for reassembly or for a gap to fill,
  data on more than ``MAX_INBOUND_STREAMS`` streams at once, empty DATA chunks: no sender
  that follows the RFC does this, so the transport also emits ``violation`` (the daemon
  closes that peer connection).

A duplicate is always acknowledged again. The first drop of each kind is logged, naming
the peer (``peer_label``), once per association.
"""

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiortc.rtcsctptransport import (
    WEBRTC_DCEP,
    DataChunk,
    InboundStream,
    RTCSctpTransport,
    SackChunk,
)
from aiortc.utils import uint32_gte

log = logging.getLogger("p2p_webrtc.sctp")

RECEIVE_WINDOW = 1024 * 1024
"""aiortc's advertised receive window when nothing is held."""
WINDOW_UPDATE_AT = RECEIVE_WINDOW // 2
"""A SACK announces the window when it opens past this after having been below it."""
WINDOW_SLACK = 256 * 1024
"""Data accepted beyond the advertised window: one message of the largest size aiortc
advertises (``a=max-message-size``), which a sender may send to probe a closed window."""
MAX_BUFFERED_CHUNKS = 4096
"""DATA chunks kept for reassembly or reordering (a full window is about 900 chunks)."""
MAX_INBOUND_STREAMS = 4096
"""Streams with state at once: each open data channel is one, and a channel closed by the
homelab is forgotten once the peer has reset its stream (about 350 bytes each)."""


class InboundStreams(dict[int, InboundStream]):
    """aiortc's inbound streams by id, and how many chunks they keep for reassembly."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks = 0

    def pop(self, stream_id: int, default: Any = None) -> Any:
        stream = super().pop(stream_id, default)
        if isinstance(stream, InboundStream):
            self.chunks -= len(stream.reassembly)  # a reset stream's chunks are gone too
        return stream


class CountedInboundStream(InboundStream):
    """aiortc's InboundStream, keeping ``InboundStreams.chunks`` up to date."""

    def __init__(self, streams: InboundStreams) -> None:
        super().__init__()
        self._streams = streams

    def add_chunk(self, chunk: DataChunk) -> None:
        super().add_chunk(chunk)
        self._streams.chunks += 1

    def pop_messages(self) -> Iterator[tuple[int, int, bytes]]:
        before = len(self.reassembly)
        for message in super().pop_messages():
            self._streams.chunks -= before - len(self.reassembly)
            before = len(self.reassembly)
            yield message

    def prune_chunks(self, tsn: int) -> int:
        before = len(self.reassembly)
        freed = super().prune_chunks(tsn)
        self._streams.chunks -= before - len(self.reassembly)
        return freed


class FlowControlledSctpTransport(RTCSctpTransport):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer_rwnd: int | None = None
        self._last_probe = 0.0
        self._held = 0
        self._probe_timer: asyncio.TimerHandle | None = None
        self._updates: set[asyncio.Task[None]] = set()
        self._inbound_streams: InboundStreams = InboundStreams()
        self.peer_label = "a peer"
        """Who is at the other end, for log lines (the daemon names the client)."""
        self.dropped_chunks = 0
        self._drops_logged: set[str] = set()
        self._dropped_since_sack = False

    # --- receiving: what a peer may make us keep ----------------------------------------

    def _get_inbound_stream(self, stream_id: int) -> InboundStream:
        stream = self._inbound_streams.get(stream_id)
        if stream is None:
            stream = self._inbound_streams[stream_id] = CountedInboundStream(self._inbound_streams)
        return stream

    def _refuses(self, chunk: DataChunk) -> bool:
        """Whether ``chunk`` is dropped unacknowledged (see the module doc); logs the first."""
        last = self._last_received_tsn
        if (last is not None and uint32_gte(last, chunk.tsn)) or chunk.tsn in self._sack_misordered:
            return False  # a duplicate: acknowledged again, nothing kept
        size = len(chunk.user_data)
        if self._advertised_rwnd - size < -WINDOW_SLACK:
            self._drop(f"data beyond the receive window it was given ({RECEIVE_WINDOW} bytes)")
            return True
        if size == 0:
            why = "an empty DATA chunk"
        elif self._inbound_streams.chunks >= MAX_BUFFERED_CHUNKS:
            why = f"more than {MAX_BUFFERED_CHUNKS} chunks waiting for reassembly"
        elif (
            chunk.stream_id not in self._inbound_streams
            and len(self._inbound_streams) >= MAX_INBOUND_STREAMS
        ):
            why = f"data on more than {MAX_INBOUND_STREAMS} streams at once"
        else:
            return False
        if self._drop(why):
            self.emit("violation", f"it sent {why}")
        return True

    def _drop(self, why: str) -> bool:
        """Count a dropped chunk; True (and one log line) the first time for this reason."""
        self.dropped_chunks += 1
        self._dropped_since_sack = True
        if why in self._drops_logged:
            return False
        self._drops_logged.add(why)
        log.warning(
            "Peer %s sent %s: dropping such data unacknowledged (its sender must slow down)",
            self.peer_label,
            why,
        )
        return True

    async def _receive_data_chunk(self, chunk: DataChunk) -> None:
        if self._refuses(chunk):
            self._sack_needed = True  # RFC 9260 6.2: a drop is reported by a SACK at once
            return
        await super()._receive_data_chunk(chunk)

    async def _send_sack(self) -> None:
        self._dropped_since_sack = False
        await super()._send_sack()

    # --- receiving: flow control -------------------------------------------------------

    @property
    def held(self) -> int:
        """Bytes delivered to the application that it has not consumed yet."""
        return self._held

    def hold(self, size: int) -> None:
        """The application keeps ``size`` more bytes: the advertised window shrinks by them."""
        self._held += size
        self._advertised_rwnd -= size

    def release(self, size: int) -> None:
        """The application consumed ``size`` held bytes: the window grows, and is announced."""
        size = min(size, self._held)
        was = self._advertised_rwnd
        self._held -= size
        self._advertised_rwnd += size
        established = self._association_state == self.State.ESTABLISHED
        if established and was < WINDOW_UPDATE_AT <= self._advertised_rwnd:
            self._spawn(self._send_sack())

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._updates.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: "asyncio.Task[None]") -> None:
        self._updates.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("SCTP window update failed: %s", task.exception())

    # --- sending -----------------------------------------------------------------------

    async def _receive_sack_chunk(self, chunk: SackChunk) -> None:
        self._peer_rwnd = chunk.advertised_rwnd
        await super()._receive_sack_chunk(chunk)

    def _window_allows(self, size: int) -> bool:
        window = self._ssthresh if self._peer_rwnd is None else self._peer_rwnd
        if self._flight_size + size <= window:
            return True
        if self._flight_size == 0:
            # The peer's window is closed and nothing is in flight: probe once per RTO.
            now = time.monotonic()
            if now - self._last_probe >= self._rto:
                self._last_probe = now
                return True
        return False

    async def _data_channel_flush(self) -> None:
        """aiortc's flush (rtcsctptransport.py in aiortc 1.16.0), gated on the peer's window."""
        if self._association_state != self.State.ESTABLISHED:
            return

        while self._data_channel_queue and not self._outbound_queue:
            channel, protocol, user_data = self._data_channel_queue[0]
            if protocol != WEBRTC_DCEP and not self._window_allows(len(user_data)):
                if self._flight_size == 0 and self._probe_timer is None:
                    # Nothing in flight will bring a SACK: come back for the next probe.
                    self._probe_timer = asyncio.get_running_loop().call_later(
                        self._rto, self._flush_later
                    )
                break
            self._data_channel_queue.popleft()

            stream_id = channel.id
            if stream_id is None:
                assert self._data_channel_id is not None  # set once the association is up
                stream_id = self._data_channel_id
                while stream_id in self._data_channels:
                    stream_id += 2
                self._data_channels[stream_id] = channel
                channel._setId(stream_id)

            if protocol == WEBRTC_DCEP:
                await self._send(stream_id, protocol, user_data)
            else:
                expiry = (
                    time.time() + channel.maxPacketLifeTime / 1000
                    if channel.maxPacketLifeTime
                    else None
                )
                await self._send(
                    stream_id,
                    protocol,
                    user_data,
                    expiry=expiry,
                    max_retransmits=channel.maxRetransmits,
                    ordered=channel.ordered,
                )
                channel._addBufferedAmount(-len(user_data))

        await self._transmit_reconfig()

    def _flush_later(self) -> None:
        self._probe_timer = None
        if self._association_state == self.State.ESTABLISHED:
            self._spawn(self._data_channel_flush())
