"""Candidate gathering on the installed ICE connection class, against STUN servers on loopback.

Two STUN servers that see the same mapping give one server-reflexive candidate; a server
that never answers is given up after the timeout; an address that cannot be bound is
skipped. (NAT, TURN and the port range are exercised end to end in tests/e2e.)
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioice import stun

import p2p_webrtc as webrtc
from p2p_protocol.iceservers import parse_ice_url
from p2p_webrtc.datapath import DataPath, DataPathOptions

pytestmark = pytest.mark.usefixtures("restore_default_install")  # tests/integration/conftest.py

MAPPED = ("203.0.113.7", 40000)
"""What the test's STUN servers say they saw: a documentation address, like a NAT's."""


class StunResponder(asyncio.DatagramProtocol):
    """Answers every binding request with ``MAPPED``, or (``silent``) with nothing."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.silent:
            return
        request = stun.parse_message(data)
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = MAPPED
        self.transport.sendto(bytes(response), addr)


@contextlib.asynccontextmanager
async def stun_servers(*silent: bool) -> AsyncIterator[list[str]]:
    """One STUN server on loopback per argument; their URLs."""
    loop = asyncio.get_running_loop()
    transports = []
    for quiet in silent:
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(StunResponder, quiet), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
    try:
        yield [f"stun:127.0.0.1:{t.get_extra_info('sockname')[1]}" for t in transports]
    finally:
        for transport in transports:
            transport.close()


@pytest.mark.parametrize("path", list(DataPath))
async def test_gathering_dedupes_mappings_skips_unbindable_addresses_and_gives_up_on_silence(
    path: DataPath, caplog: pytest.LogCaptureFixture
) -> None:
    async with stun_servers(False, False, True) as urls:
        policy = webrtc.IcePolicy(tuple(parse_ice_url(url) for url in urls))
        installed = webrtc.install(policy, DataPathOptions(path))
        connection = installed.ice_connection(ice_controlling=True)
        try:
            with caplog.at_level(logging.INFO, logger="p2p_webrtc.ice"):
                candidates = await connection.get_component_candidates(
                    1, ["127.0.0.1", "192.0.2.1"], timeout=1
                )
        finally:
            await connection.close()

    kinds = sorted((c.type, c.host, c.port) for c in candidates)
    host_port = next(c.port for c in candidates if c.type == "host")
    assert kinds == [("host", "127.0.0.1", host_port), ("srflx", *MAPPED)]
    assert "1 STUN/TURN queries did not answer within 1 s" in caplog.messages
