"""ICE candidate gathering as this project needs it, on top of aioice.

aioice (under aiortc) binds host candidates to ephemeral ports and asks only the first STUN
and the first TURN server it is given. ``BridgeIceConnection`` gathers instead:

- host candidates on sockets bound inside the configured ``ice_port_range``, so a firewall
  can open exactly that range (TURN client sockets connect outwards and stay ephemeral);
- a server-reflexive candidate from every STUN server (different servers may see
  different mappings, which is itself useful to a symmetric NAT's peer);
- a relayed candidate from every TURN server.

It also drops empty datagrams, which would end aiortc's DTLS reader. Host sockets are
served by ``HostProtocol`` (the fast data path puts its own subclass in its place).
Everything else (pairing, checks, consent) is aioice's. The policy and the host protocol
are class attributes of a subclass made per install (``BridgeIceConnection.configured``,
called by ``webrtc.install``): aioice creates connections itself, with no way to pass them.
"""

import asyncio
import errno
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import (
    Connection,
    StunProtocol,
    TransportPolicy,
    relayed_candidate,
    server_reflexive_candidate,
)
from aioice.turn import UDP_SOCKET_BUFFER_SIZE

from p2p_protocol.iceservers import IceServer

log = logging.getLogger("p2p_webrtc.ice")


class PortRangeExhausted(OSError):
    """Every port of ``ice_port_range`` is taken on some address."""


@dataclass(frozen=True)
class IcePolicy:
    servers: tuple[IceServer, ...] = ()
    port_range: tuple[int, int] | None = None

    @property
    def stun_servers(self) -> tuple[IceServer, ...]:
        return tuple(s for s in self.servers if not s.is_turn)

    @property
    def turn_servers(self) -> tuple[IceServer, ...]:
        return tuple(s for s in self.servers if s.is_turn)

    def describe(self) -> str:
        servers = ", ".join(s.describe() for s in self.servers) or "none (host candidates only)"
        ports = f"{self.port_range[0]}-{self.port_range[1]}" if self.port_range else "any"
        return f"ICE servers: {servers}; host candidate UDP ports: {ports}"


class HostProtocol(StunProtocol):
    """aioice's protocol on a host candidate's socket; the fast data path extends it."""

    def bound(self, sock: socket.socket) -> None:
        """Called once the endpoint exists, with its socket."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)


def _bind_socket(address: str, port_range: tuple[int, int] | None) -> socket.socket:
    """A UDP socket bound to ``address``, on a free port of ``port_range`` (any without one)."""
    family = (
        socket.AF_INET6
        if ipaddress.ip_address(address.split("%", maxsplit=1)[0]).version == 6
        else socket.AF_INET
    )
    if port_range is None:
        ports = [0]
    else:
        low, high = port_range
        ports = list(range(low, high + 1))
        start = random.randrange(len(ports))  # noqa: S311 - spreads peers over the range
        ports = ports[start:] + ports[:start]
    for port in ports:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE and port_range is not None:
                continue
            raise
        sock.setblocking(False)
        return sock
    assert port_range is not None
    raise PortRangeExhausted(
        f"every UDP port of ice_port_range {port_range[0]}-{port_range[1]} is in use on {address}"
    )


async def bind_udp(
    protocol_factory: Callable[[], HostProtocol],
    address: str,
    port_range: tuple[int, int] | None,
) -> tuple[asyncio.DatagramTransport, HostProtocol]:
    """A UDP endpoint on ``address``, on a free port of ``port_range`` (any port without one)."""
    sock = _bind_socket(address, port_range)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(protocol_factory, sock=sock)
    protocol.bound(sock)
    return transport, protocol


CandidateQuery = asyncio.Task[tuple[Candidate, StunProtocol | None]]
"""A STUN or TURN server's answer to come: the candidate, and a TURN allocation's protocol."""


class BridgeIceConnection(Connection):
    """aioice's Connection, gathering with ``policy`` (see the module doc).

    aioice creates connections itself, with no way to pass them a policy, so ``configured``
    makes a subclass per install that carries it (and the host sockets' protocol).
    """

    policy: ClassVar[IcePolicy] = IcePolicy()
    host_protocol: ClassVar[type[HostProtocol]] = HostProtocol

    @staticmethod
    def configured(
        policy: IcePolicy, host_protocol: type[HostProtocol]
    ) -> type["BridgeIceConnection"]:
        chosen_policy, chosen_protocol = policy, host_protocol

        class ConfiguredIceConnection(BridgeIceConnection):
            policy = chosen_policy
            host_protocol = chosen_protocol

        return ConfiguredIceConnection

    def data_received(self, data: bytes, component: int) -> None:
        if data:  # an empty datagram (or TURN payload) would end aiortc's DTLS reader
            super().data_received(data, component)

    async def get_component_candidates(  # aioice's signature, `timeout` included
        self,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109
    ) -> list[Candidate]:
        host_protocols = await self._bind_hosts(component, addresses)
        self._protocols += host_protocols
        candidates = [protocol.local_candidate for protocol in host_protocols]
        queries = self._stun_queries(host_protocols) + self._turn_allocations(component)
        if queries:
            candidates += await self._server_candidates(queries, timeout)
        return without_duplicates(candidates)

    # --- host candidates ---------------------------------------------------------------

    async def _bind_hosts(self, component: int, addresses: list[str]) -> list[HostProtocol]:
        """A host candidate's socket on each address that can be bound (all or none when
        the port range is exhausted)."""
        protocols: list[HostProtocol] = []
        for address in addresses:
            try:
                protocol = await self._bind_host(component, address)
            except PortRangeExhausted:
                for opened in protocols:
                    opened.transport.close()
                raise
            if protocol is not None:
                protocols.append(protocol)
        return protocols

    async def _bind_host(self, component: int, address: str) -> HostProtocol | None:
        """The host candidate's socket on ``address``; None if it cannot be bound there."""
        try:
            transport, protocol = await bind_udp(
                lambda: self.host_protocol(self), address, self.policy.port_range
            )
        except PortRangeExhausted:
            raise
        except OSError as exc:
            log.debug("Could not bind to %s: %s", address, exc)
            return None
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = host_candidate(component, host, port)
        return protocol

    # --- server-reflexive and relayed candidates ---------------------------------------

    def _stun_queries(self, host_protocols: list[HostProtocol]) -> list[CandidateQuery]:
        """One query per STUN server and IPv4 host socket."""
        return [
            asyncio.create_task(server_reflexive_candidate(protocol, (stun.host, stun.port)))
            for stun in self.policy.stun_servers
            for protocol in host_protocols
            if ipaddress.ip_address(protocol.local_candidate.host).version == 4
        ]

    def _turn_allocations(self, component: int) -> list[CandidateQuery]:
        """One allocation per TURN server, each on a socket of its own; none for a peer
        connection configured without TURN servers (a probe for a direct path: a relayed
        candidate would let it succeed through the relay it is meant to replace)."""
        if self.turn_server is None:
            return []
        return [
            asyncio.create_task(
                relayed_candidate(
                    component=component,
                    hide_related_address=self._transport_policy == TransportPolicy.RELAY,
                    protocol_factory=lambda: StunProtocol(self),
                    turn_server=(turn.host, turn.port),
                    turn_username=turn.username,
                    turn_password=turn.credential,
                    turn_ssl=turn.scheme == "turns",
                    turn_transport=turn.transport,
                )
            )
            for turn in self.policy.turn_servers
        ]

    async def _server_candidates(
        self, queries: list[CandidateQuery], seconds: int
    ) -> list[Candidate]:
        """The candidates of the queries that answer within ``seconds``; the rest are cancelled."""
        done, pending = await asyncio.wait(queries, timeout=seconds)
        candidates: list[Candidate] = []
        for query in done:
            if query.exception() is not None:
                log.info("A STUN/TURN server gave no candidate: %s", query.exception())
                continue
            candidate, relay_protocol = query.result()
            if relay_protocol is not None:
                self._protocols.append(relay_protocol)
            candidates.append(candidate)
        for query in pending:
            query.cancel()
        if pending:
            log.info("%d STUN/TURN queries did not answer within %d s", len(pending), seconds)
        return candidates


def host_candidate(component: int, host: str, port: int) -> Candidate:
    return Candidate(
        foundation=candidate_foundation("host", "udp", host),
        component=component,
        transport="udp",
        priority=candidate_priority(component, "host"),
        host=host,
        port=port,
        type="host",
    )


def without_duplicates(candidates: list[Candidate]) -> list[Candidate]:
    """The first candidate of each (type, address): two STUN servers often see the same
    mapping."""
    seen: set[tuple[str, str, int]] = set()
    unique: list[Candidate] = []
    for candidate in candidates:
        key = (candidate.type, candidate.host, candidate.port)
        if key not in seen:
            seen.add(key)
            unique.append(candidate)
    return unique
