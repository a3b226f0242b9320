"""What a peer can make the SCTP layer keep, on a live association over loopback.

Two aiortc peers in this process (host candidates on 127.0.0.1, no ICE server), both data
paths. The receiving end holds every message it gets and reads nothing, as a service that
never reads would: a sender that ignores the advertised window (aiortc's own behaviour,
put back on one transport) is held to the window; our own sender, which respects it and
probes a closed window with one message, never loses a chunk. Crafted DATA chunks (tiny
fragments that never complete, gaps, empty chunks, thousands of streams) are dropped at
their limits instead of being kept.
"""

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiortc import RTCDataChannel
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    DataChunk,
    tsn_plus_one,
)

import p2p_webrtc as webrtc
from p2p_webrtc import queued_messages
from p2p_webrtc.channels import ECHO_BACKLOG_LIMIT, EchoChannel, MessageChannel
from p2p_webrtc.datapath import DataPath, DataPathOptions
from p2p_webrtc.ice import IcePolicy
from p2p_webrtc.sctp import (
    MAX_BUFFERED_CHUNKS,
    MAX_INBOUND_STREAMS,
    RECEIVE_WINDOW,
    WINDOW_SLACK,
    FlowControlledSctpTransport,
)
from tests.support.loopback import channel_between, send_paced

MESSAGE = bytes(range(256)) * 64  # 16 KiB, as the bridge sends
WEBRTC_BINARY = 53

PATHS = pytest.mark.parametrize("path", [DataPath.FAST, DataPath.STANDARD])


@dataclass
class Association:
    channel: RTCDataChannel
    """The sender's end of a data channel."""
    far_end: RTCDataChannel
    receiver: FlowControlledSctpTransport
    violations: list[str]
    """What the receiver reported as broken limits (``webrtc.watch_peer``)."""


@contextlib.asynccontextmanager
async def association(path: DataPath) -> AsyncIterator[Association]:
    """A connected pair of peers and one data channel between them."""
    webrtc.install(IcePolicy(), DataPathOptions(path))
    sender, receiver = (
        webrtc.new_peer_connection(IcePolicy()),
        webrtc.new_peer_connection(IcePolicy()),
    )
    try:
        channel, far_end = await channel_between(sender, receiver)
        transport: Any = far_end.transport
        assert isinstance(transport, FlowControlledSctpTransport)
        violations: list[str] = []
        webrtc.watch_peer(receiver, "the-sender", violations.append)
        yield Association(channel, far_end, transport, violations)
    finally:
        await sender.close()
        await receiver.close()


def dropping(transport: FlowControlledSctpTransport, count: int) -> asyncio.Event:
    """An event set once ``transport`` has dropped ``count`` chunks."""
    refuses, enough = transport._refuses, asyncio.Event()

    def counting(chunk: DataChunk) -> bool:
        refused = refuses(chunk)
        if transport.dropped_chunks >= count:
            enough.set()
        return refused

    transport._refuses = counting  # type: ignore[method-assign]
    return enough


@PATHS
async def test_a_sender_that_ignores_the_window_is_held_to_it(
    path: DataPath, restore_default_install: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with association(path) as pair:
        hoarder = MessageChannel(pair.far_end)  # takes everything it is given, reads nothing
        sending: Any = pair.channel.transport
        sending._window_allows = lambda size: True  # aiortc's own sender: no window
        many_dropped = dropping(pair.receiver, 200)
        pushing = asyncio.create_task(send_paced(pair.channel, MESSAGE, 8 * 1024 * 1024))
        try:
            await asyncio.wait_for(many_dropped.wait(), 30)
        finally:
            pushing.cancel()
        assert pair.receiver.held <= RECEIVE_WINDOW + WINDOW_SLACK + len(MESSAGE)
        assert hoarder._queued == pair.receiver.held
        assert pair.violations == []  # a sender that must slow down, not a broken one
    assert (
        "Peer the-sender sent data beyond the receive window it was given (1048576 bytes): "
        "dropping such data unacknowledged (its sender must slow down)"
    ) in caplog.messages


@PATHS
async def test_a_sender_that_respects_the_window_loses_nothing_to_a_slow_reader(
    path: DataPath, restore_default_install: None
) -> None:
    total = 4 * 1024 * 1024
    async with association(path) as pair:
        reader = MessageChannel(pair.far_end)
        sending = asyncio.create_task(send_paced(pair.channel, MESSAGE, total))
        digest, received = hashlib.sha256(), 0
        async with asyncio.timeout(60):
            while received < total:
                message = await reader.receive()
                assert isinstance(message, bytes)
                digest.update(message)
                received += len(message)
                if received % (512 * 1024) == 0:
                    await asyncio.sleep(0.2)  # a slow service: the window closes and reopens
        await sending
        assert digest.digest() == hashlib.sha256(MESSAGE * (total // len(MESSAGE))).digest()
        assert pair.receiver.dropped_chunks == 0  # probes of a closed window are accepted


def crafted(transport: FlowControlledSctpTransport, count: int, **fields: Any) -> list[DataChunk]:
    """``count`` DATA chunks following the last received TSN, with ``fields`` set."""
    chunks, tsn = [], transport._last_received_tsn
    assert tsn is not None
    for _ in range(count):
        tsn = tsn_plus_one(tsn)
        chunk = DataChunk()
        chunk.tsn, chunk.protocol, chunk.user_data = tsn, WEBRTC_BINARY, b"x"
        for name, value in fields.items():
            setattr(chunk, name, value)
        chunks.append(chunk)
    return chunks


@PATHS
async def test_fragments_that_never_complete_are_kept_up_to_a_limit(
    path: DataPath, restore_default_install: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with association(path) as pair:
        receiver = pair.receiver
        middle = 0  # neither first nor last fragment: a message that never completes
        for chunk in crafted(
            receiver, MAX_BUFFERED_CHUNKS + 500, stream_id=pair.far_end.id, flags=middle
        ):
            await receiver._receive_data_chunk(chunk)
        assert receiver._inbound_streams.chunks == MAX_BUFFERED_CHUNKS
        assert receiver.dropped_chunks == 500
        why = f"more than {MAX_BUFFERED_CHUNKS} chunks waiting for reassembly"
        assert pair.violations == [f"it sent {why}"]  # reported once
        assert why in caplog.text


@PATHS
async def test_empty_chunks_and_thousands_of_streams_are_dropped(
    path: DataPath, restore_default_install: None
) -> None:
    async with association(path) as pair:
        receiver = pair.receiver
        for chunk in crafted(receiver, 3, user_data=b""):
            await receiver._receive_data_chunk(chunk)
        assert receiver.dropped_chunks == 3
        first_fragment = SCTP_DATA_FIRST_FRAG  # never completed: the stream keeps state
        chunks = crafted(receiver, MAX_INBOUND_STREAMS + 10, flags=first_fragment)
        for stream, chunk in enumerate(chunks):
            chunk.stream_id = 1000 + stream
            await receiver._receive_data_chunk(chunk)
        assert len(receiver._inbound_streams) == MAX_INBOUND_STREAMS
        assert pair.violations == [
            "it sent an empty DATA chunk",
            f"it sent data on more than {MAX_INBOUND_STREAMS} streams at once",
        ]


@PATHS
async def test_whole_messages_after_a_gap_are_delivered_once_it_fills(
    path: DataPath, restore_default_install: None
) -> None:
    """The counting stays right through reordering (what the limits rely on)."""
    async with association(path) as pair:
        receiver, far_end = pair.receiver, pair.far_end
        got: list[bytes] = []
        far_end.on("message", got.append)
        whole = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
        chunks = crafted(receiver, 3, stream_id=far_end.id, flags=whole)
        assert far_end.id is not None
        first = receiver._get_inbound_stream(far_end.id).sequence_number
        for seq, chunk in enumerate(chunks):
            chunk.stream_seq, chunk.user_data = first + seq, bytes([seq]) * 10
        for chunk in (chunks[2], chunks[1], chunks[0]):
            await receiver._receive_data_chunk(chunk)
        assert got == [bytes([0]) * 10, bytes([1]) * 10, bytes([2]) * 10]
        assert receiver._inbound_streams.chunks == 0
        assert receiver.dropped_chunks == 0
        assert pair.violations == []


def test_the_chunk_limit_leaves_room_for_a_full_window_of_full_chunks() -> None:
    assert MAX_BUFFERED_CHUNKS * 1200 > 2 * (RECEIVE_WINDOW + WINDOW_SLACK)


async def test_an_echo_channel_whose_echoes_are_not_taken_stops_echoing(
    restore_default_install: None,
) -> None:
    """Tiny messages echoed to a peer that holds every echo: the backlog is bounded."""
    async with association(DataPath.FAST) as pair:
        overflows: list[str] = []
        overflowed, all_arrived = asyncio.Event(), asyncio.Event()
        arrived, expected = 0, -1

        def on_overflow(why: str) -> None:
            overflows.append(why)
            overflowed.set()

        def count(_: object) -> None:
            nonlocal arrived
            arrived += 1
            if arrived == expected:
                all_arrived.set()

        EchoChannel(pair.far_end, on_overflow)
        pair.far_end.on("message", count)
        MessageChannel(pair.channel)  # the peer keeps every echo and reads none
        sent = 0
        while not overflowed.is_set():
            pair.channel.send(b"x")
            sent += 1
            await asyncio.sleep(0)
        backlog, expected = queued_messages(pair.far_end), sent + 1000
        for _ in range(1000):  # these arrive, but are no longer echoed
            pair.channel.send(b"x")
        await asyncio.wait_for(all_arrived.wait(), 30)
        assert overflows == [f"has {ECHO_BACKLOG_LIMIT} echoes waiting to be sent"]
        assert queued_messages(pair.far_end) <= backlog
