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

Browsers (usrsctp) do both already, so a browser peer is flow-controlled too.
"""

import asyncio
import logging
import time
from typing import Any

from aiortc.rtcsctptransport import WEBRTC_DCEP, RTCSctpTransport, SackChunk

log = logging.getLogger("homelab_server.sctp")

RECEIVE_WINDOW = 1024 * 1024
"""aiortc's advertised receive window when nothing is held."""
WINDOW_UPDATE_AT = RECEIVE_WINDOW // 2
"""A SACK announces the window when it opens past this after having been below it."""


class FlowControlledSctpTransport(RTCSctpTransport):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer_rwnd: int | None = None
        self._last_probe = 0.0
        self._held = 0
        self._probe_timer: asyncio.TimerHandle | None = None
        self._updates: set[asyncio.Task[None]] = set()

    # --- receiving ---------------------------------------------------------------------

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
