"""Two aiortc peers in this process, talking over loopback (no ICE server)."""

import asyncio

from aiortc import RTCDataChannel, RTCPeerConnection


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer, answer and connect two peers of this process (candidates are in the SDP)."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def channel_between(
    offerer: RTCPeerConnection, answerer: RTCPeerConnection, label: str = "data"
) -> tuple[RTCDataChannel, RTCDataChannel]:
    """Connect the two peers with one data channel: (the offerer's end, the answerer's)."""
    near = offerer.createDataChannel(label)
    arrived: asyncio.Queue[RTCDataChannel] = asyncio.Queue()
    answerer.on("datachannel", arrived.put_nowait)
    await negotiate(offerer, answerer)
    return near, await asyncio.wait_for(arrived.get(), 10)


async def send_paced(channel: RTCDataChannel, message: bytes, total: int) -> None:
    """``message`` until ``total`` bytes are sent, never more than 1 MiB queued locally."""
    can_send = asyncio.Event()
    channel.on("bufferedamountlow", can_send.set)
    channel.bufferedAmountLowThreshold = 256 * 1024
    for _ in range(total // len(message)):
        if channel.bufferedAmount > 1024 * 1024:
            can_send.clear()
            await can_send.wait()
        channel.send(message)
