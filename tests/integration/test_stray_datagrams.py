"""Stray datagrams on a live connection's socket: dropped, and the connection goes on.

Anyone who can reach a host candidate's port can send it anything; aiortc's DTLS reader
ended on an empty datagram (it reads the first byte). Two peers in this process, host
candidates on loopback, no ICE server; each data path.
"""

import asyncio
import socket
from typing import Any

import pytest
from aiortc import RTCDataChannel

import p2p_webrtc as webrtc
from p2p_webrtc.datapath import DataPath, DataPathOptions
from p2p_webrtc.ice import IcePolicy

pytestmark = pytest.mark.usefixtures("restore_default_install")  # tests/integration/conftest.py


@pytest.mark.parametrize("path", list(DataPath))
async def test_empty_and_garbage_datagrams_do_not_end_the_connection(path: DataPath) -> None:
    webrtc.install(IcePolicy(), DataPathOptions(path))
    sender, receiver = (webrtc.new_peer_connection(IcePolicy()) for _ in range(2))
    try:
        channel = sender.createDataChannel("data")
        arrived: asyncio.Queue[bytes] = asyncio.Queue()

        def on_channel(far_end: RTCDataChannel) -> None:
            far_end.on("message", arrived.put_nowait)

        receiver.on("datachannel", on_channel)
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 10)
        channel.send(b"before")
        assert await asyncio.wait_for(arrived.get(), 10) == b"before"

        connection: Any = receiver.sctp.transport.transport._connection  # type: ignore[union-attr]
        address = connection._nominated[1].protocol.transport.get_extra_info("sockname")[:2]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
            for datagram in (b"", b"\x17", b"\x17\xfe\xfd" + bytes(40), b"\xff" * 100):
                stray.sendto(datagram, address)
        channel.send(b"after")
        assert await asyncio.wait_for(arrived.get(), 10) == b"after"
        assert receiver.connectionState == "connected"
    finally:
        await sender.close()
        await receiver.close()
