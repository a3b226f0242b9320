"""SCTP for the fast data path: delayed SACKs, a due-only retransmit scan, in-order receive.

On top of the flow-controlled transport (webrtc/sctp.py), and changing only what aiortc
1.16.0 spends its time on:

- acknowledging: aiortc sends a SACK for every packet with data. Here a SACK goes out for
  every ``sack_every``-th such packet, at once on a gap or a duplicate (RFC 9260 sections
  6.2 and 6.7), whenever no datagram is waiting (acks sooner, never fewer), and otherwise
  within ``SACK_DELAY``. The RFC policy acks every second packet;
- sending: ``max_burst`` packets per call beyond what is in flight (the RFC's Max.Burst is 4);
  chunks marked for retransmission are kept in a queue of their own, so a send costs what
  is due (aiortc scanned every packet in flight on every send, including every SACK);
- receiving: a DATA chunk that is the next TSN, with nothing out of order, skips the
  reassembly bookkeeping; a message is reassembled once, when its last fragment arrives;
- a burst is sent corked: its DTLS records leave together (dtls.py).
"""

import asyncio
import logging
import time
from collections import deque
from typing import Any, ClassVar

from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    USERDATA_MAX_LENGTH,
    DataChunk,
    InitChunk,
    parse_packet,
    tsn_plus_one,
)
from aiortc.utils import uint16_add, uint32_gte

from p2p_webrtc.datapath import AckPolicy
from p2p_webrtc.fastpath.dtls import FastDtlsTransport
from p2p_webrtc.sctp import FlowControlledSctpTransport

log = logging.getLogger("p2p_webrtc.fastpath")

SACK_DELAY = 0.2
"""RFC 9260's default SACK delay: the longest an acknowledgement waits."""
WHOLE_MESSAGE = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG


class FastSctpTransport(FlowControlledSctpTransport):
    """aiortc creates the SCTP transport itself, with no way to pass it options, so
    ``configured`` makes a subclass per install that carries the acknowledgement policy."""

    sack_every: ClassVar[int] = 2
    max_burst: ClassVar[int] = 4

    @staticmethod
    def configured(ack_policy: AckPolicy) -> type["FastSctpTransport"]:
        aggressive = ack_policy is AckPolicy.AGGRESSIVE

        class ConfiguredSctpTransport(FastSctpTransport):
            sack_every = 16 if aggressive else 2
            max_burst = 32 if aggressive else 4

        return ConfiguredSctpTransport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unacked_packets = 0
        self._unacked_since = 0.0
        self._sack_timer: asyncio.TimerHandle | None = None
        self._due: deque[DataChunk] = deque()

    # --- acknowledging -----------------------------------------------------------------

    async def _handle_data(self, data: bytes) -> None:
        """aiortc's packet handling, with the SACK sent by this class's policy."""
        try:
            _, _, verification_tag, chunks = parse_packet(data)
        except ValueError:
            return
        if len(chunks) == 1 and type(chunks[0]) is InitChunk:
            expected_tag = 0
        elif len(chunks) > 1 and any(type(chunk) is InitChunk for chunk in chunks):
            return  # an INIT is alone in its packet (RFC 9260 section 6.10)
        else:
            expected_tag = self._local_verification_tag
        if verification_tag != expected_tag:
            return

        with_data = False
        for chunk in chunks:
            if type(chunk) is DataChunk:
                with_data = True
                await self._receive_data_chunk(chunk)
            else:
                await self._receive_chunk(chunk)

        if self._sack_needed:
            if with_data and not self._unacked_packets:
                self._unacked_since = time.monotonic()
            self._unacked_packets += with_data
            if self._sack_due_now(with_data):
                await self._send_sack()
            elif self._sack_timer is None:
                self._sack_timer = asyncio.get_running_loop().call_later(
                    SACK_DELAY, self._sack_delay_over
                )

    def _sack_due_now(self, with_data: bool) -> bool:
        return (
            not with_data
            or self._association_state != self.State.ESTABLISHED
            or bool(self._sack_duplicates or self._sack_misordered or self._dropped_since_sack)
            or self._unacked_packets >= self.sack_every
        )

    async def _receive_drained(self) -> None:
        """Called by the DTLS transport when no datagram is waiting."""
        if self._sack_needed:
            await self._send_sack()

    def _sack_delay_over(self) -> None:
        # One timer at a time, left running when a SACK goes out (arming one per delayed
        # SACK costs more than the SACK): when it fires, it acks what has waited long enough
        # and is armed again for what has not.
        self._sack_timer = None
        if not (self._sack_needed and self._association_state == self.State.ESTABLISHED):
            return
        waited = time.monotonic() - self._unacked_since
        if waited >= SACK_DELAY or not self._unacked_packets:
            self._spawn(self._send_sack())
        else:
            self._sack_timer = asyncio.get_running_loop().call_later(
                SACK_DELAY - waited, self._sack_delay_over
            )

    async def _send_sack(self) -> None:
        self._unacked_packets = 0
        await super()._send_sack()

    # --- receiving ---------------------------------------------------------------------

    async def _receive_data_chunk(self, chunk: DataChunk) -> None:
        if self._refuses(chunk):
            self._sack_needed = True  # reported at once (_sack_due_now)
            return
        last = self._last_received_tsn
        in_order = (
            last is not None
            and chunk.tsn == tsn_plus_one(last)
            and not self._sack_misordered
            and not self._sack_duplicates
            and not chunk.flags & SCTP_DATA_UNORDERED
        )
        if not in_order:
            await super()._receive_data_chunk(chunk)
            return
        self._sack_needed = True
        self._last_received_tsn = chunk.tsn
        stream = self._get_inbound_stream(chunk.stream_id)
        if (
            not stream.reassembly
            and chunk.flags & WHOLE_MESSAGE == WHOLE_MESSAGE
            and chunk.stream_seq == stream.sequence_number
        ):
            stream.sequence_number = uint16_add(stream.sequence_number, 1)
            await self._receive(chunk.stream_id, chunk.protocol, chunk.user_data)
        else:
            stream.add_chunk(chunk)  # the highest TSN so far: it goes last
            self._advertised_rwnd -= len(chunk.user_data)
            if chunk.flags & SCTP_DATA_LAST_FRAG:
                for message in stream.pop_messages():
                    self._advertised_rwnd += len(message[2])
                    await self._receive(*message)
        await self._reset_deferred_streams()

    # --- sending -----------------------------------------------------------------------

    def _maybe_abandon(self, chunk: DataChunk) -> bool:
        # aiortc calls this exactly where it marks a chunk for retransmission (a third miss
        # reported by SACKs, or T3 expiring), and marks it unless it is abandoned.
        abandoned = super()._maybe_abandon(chunk)
        if not abandoned:
            self._due.append(chunk)
        return abandoned

    def _t3_expired(self) -> None:
        self._due.clear()  # T3 marks every outstanding chunk again, in order
        super()._t3_expired()

    async def _transmit(self) -> None:
        dtls = self.transport
        corked = isinstance(dtls, FastDtlsTransport) and dtls.cork()
        try:
            await self._transmit_burst()
        finally:
            if corked:
                assert isinstance(dtls, FastDtlsTransport)
                await dtls.uncork()

    async def _transmit_burst(self) -> None:
        """aiortc's ``_transmit`` with this class's burst, resending only the chunks due."""
        if self._forward_tsn_chunk is not None:
            await self._send_chunk(self._forward_tsn_chunk)
            self._forward_tsn_chunk = None
            if not self._t3_handle:
                self._t3_start()

        recovering: object = self._fast_recovery_exit  # aiortc types it None, sets an int
        if recovering is not None:
            burst_size = 2 * USERDATA_MAX_LENGTH
        else:
            burst_size = self.max_burst * USERDATA_MAX_LENGTH
        cwnd = min(self._flight_size + burst_size, self._cwnd)

        while self._due:
            chunk = self._due[0]
            if not chunk._retransmit or uint32_gte(self._last_sacked_tsn, chunk.tsn):
                self._due.popleft()  # sent again already, abandoned, or acknowledged
                continue
            if self._fast_recovery_transmit:
                self._fast_recovery_transmit = False
            elif self._flight_size >= cwnd:
                return
            self._due.popleft()
            self._flight_size_increase(chunk)
            chunk._misses = 0
            chunk._retransmit = False
            chunk._sent_count += 1
            await self._send_chunk(chunk)
            if self._sent_queue and chunk is self._sent_queue[0]:
                self._t3_restart()  # the earliest outstanding chunk is being resent

        while self._outbound_queue and self._flight_size < cwnd:
            chunk = self._outbound_queue.popleft()
            self._sent_queue.append(chunk)
            self._flight_size_increase(chunk)
            chunk._sent_count += 1
            chunk._sent_time = time.time()
            await self._send_chunk(chunk)
            if not self._t3_handle:
                self._t3_start()
