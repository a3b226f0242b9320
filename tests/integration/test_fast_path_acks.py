"""The fast path's acknowledgement policies, watched on a real association over loopback.

Two aiortc peers in this process (host candidates on 127.0.0.1, no ICE server) move 4 MB
on the fast path; the receiving SCTP transport records how many packets with data each
SACK covered. RFC acking must never leave more than two such packets unacknowledged (RFC
9260 section 6.2); the aggressive option may leave up to 16.
"""

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from aiortc import RTCPeerConnection

import p2p_webrtc as webrtc
from p2p_webrtc import fastpath
from p2p_webrtc.datapath import AckPolicy, DataPathOptions
from p2p_webrtc.ice import IcePolicy
from tests.support.loopback import channel_between, send_paced

TOTAL = 4 * 1024 * 1024
MESSAGE = bytes(range(256)) * 64  # 16 KiB, as the bridge sends


class AckRecorder:
    """Wraps a fast SCTP transport's SACK sending to record what each SACK covered."""

    def __init__(self, transport: fastpath.FastSctpTransport) -> None:
        self.covered: list[int] = []
        send_sack = transport._send_sack

        async def recording_send_sack() -> None:
            self.covered.append(transport._unacked_packets)
            await send_sack()

        transport._send_sack = recording_send_sack  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def peers(ack_policy: AckPolicy) -> AsyncIterator[tuple[RTCPeerConnection, ...]]:
    webrtc.install(IcePolicy(), DataPathOptions(ack_policy=ack_policy))
    pair = (webrtc.new_peer_connection(IcePolicy()), webrtc.new_peer_connection(IcePolicy()))
    try:
        yield pair
    finally:
        for peer in pair:
            await peer.close()


async def transfer(ack_policy: AckPolicy) -> AckRecorder:
    """TOTAL bytes from one peer to the other; asserts they arrive intact; the receiver's acks."""
    async with peers(ack_policy) as (sender, receiver):
        return await _transfer(sender, receiver)


async def _transfer(sender: RTCPeerConnection, receiver: RTCPeerConnection) -> AckRecorder:
    channel, far_end = await channel_between(sender, receiver)
    transport: Any = far_end.transport
    assert isinstance(transport, fastpath.FastSctpTransport)
    recorder = AckRecorder(transport)

    digest, received, done = hashlib.sha256(), 0, asyncio.Event()

    def on_message(message: bytes) -> None:
        nonlocal received
        digest.update(message)
        received += len(message)
        if received >= TOTAL:
            done.set()

    far_end.on("message", on_message)
    await send_paced(channel, MESSAGE, TOTAL)
    await asyncio.wait_for(done.wait(), 60)
    assert digest.digest() == hashlib.sha256(MESSAGE * (TOTAL // len(MESSAGE))).digest()
    return recorder


async def test_rfc_acking_never_leaves_more_than_two_packets_unacknowledged(
    restore_default_install: None,
) -> None:
    recorder = await transfer(AckPolicy.RFC)
    assert max(recorder.covered) <= 2
    # 4 MB is about 3,600 packets: one SACK per packet would be aiortc's own policy.
    assert len(recorder.covered) < 0.75 * sum(recorder.covered)


async def test_aggressive_acking_covers_up_to_sixteen_packets_per_sack(
    restore_default_install: None,
) -> None:
    recorder = await transfer(AckPolicy.AGGRESSIVE)
    assert 2 < max(recorder.covered) <= 16
