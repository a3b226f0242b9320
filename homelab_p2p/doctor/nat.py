"""STUN binding requests and a TURN allocation, for the doctor's NAT checks.

All STUN requests leave from one UDP socket: a NAT that maps that socket to a different
public address or port for each server is symmetric, and direct WebRTC paths through it
fail unless the other side is open; then TURN is needed.
"""

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import cast

from aioice import stun
from aioice.turn import create_turn_endpoint

from p2p_protocol.iceservers import IceServer

RETRANSMIT_AFTER = (0.5, 1.0, 2.0)  # seconds between tries, as ICE agents pace them


@dataclass(frozen=True)
class Mapping:
    server: IceServer
    address: tuple[str, int] | None
    error: str = ""


class _StunClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[bytes, asyncio.Future[stun.Message]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(ValueError):  # not STUN: ignore it
            message = stun.parse_message(data)
            waiter = self.waiting.get(message.transaction_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    async def binding(self, address: tuple[str, int], within: float) -> tuple[str, int]:
        assert self.transport is not None
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        waiter: asyncio.Future[stun.Message] = asyncio.get_running_loop().create_future()
        self.waiting[request.transaction_id] = waiter
        try:
            async with asyncio.timeout(within):
                for pause in (*RETRANSMIT_AFTER, within):
                    self.transport.sendto(bytes(request), address)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(waiter), pause)
                        break
        finally:
            del self.waiting[request.transaction_id]
        mapped: tuple[str, int] = waiter.result().attributes["XOR-MAPPED-ADDRESS"]
        return mapped


async def stun_mappings(servers: list[IceServer], within: float) -> list[Mapping]:
    """Each server's view of one local UDP socket's public address."""
    loop = asyncio.get_running_loop()
    # Any local address, as ICE gathers: the one the default route uses is what gets mapped.
    any_address = ("0.0.0.0", 0)  # noqa: S104 - a client socket, nothing listens on it
    transport, client = await loop.create_datagram_endpoint(_StunClient, local_addr=any_address)
    results = []
    try:
        for server in servers:
            try:
                infos = await loop.getaddrinfo(server.host, server.port, type=2)  # SOCK_DGRAM
                address = (str(infos[0][4][0]), int(infos[0][4][1]))
                results.append(Mapping(server, await client.binding(address, within)))
            except TimeoutError:
                results.append(Mapping(server, None, f"no answer within {within:g} s"))
            except (OSError, KeyError) as exc:
                results.append(Mapping(server, None, str(exc) or type(exc).__name__))
    finally:
        transport.close()
    return results


async def turn_allocation(server: IceServer, within: float) -> tuple[str, int]:
    """The relayed address of a fresh allocation, released again at once."""
    secure = ssl.create_default_context() if server.scheme == "turns" else None
    async with asyncio.timeout(within):
        transport, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol,
            (server.host, server.port),
            server.username,
            server.credential,
            ssl=secure,
            transport=server.transport,
        )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()
