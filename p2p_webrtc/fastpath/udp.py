"""UDP for the fast data path: batched reads, first-byte demultiplexing, direct and GSO sends.

asyncio reads one datagram per loop iteration and aioice parses every datagram as a possible
STUN message before passing it on. ``FastHostProtocol`` reads up to ``READ_BATCH`` datagrams
per wake-up into one preallocated buffer, hands DTLS records (first byte 20-63, RFC 7983)
straight to the ICE connection, and sends without asyncio's per-call checks; a burst of
equal-sized records leaves in one ``sendmsg`` with UDP GSO where the kernel offers it (the
packets on the wire are the same). Everything else (STUN checks, consent, closing) is
aioice's, through the asyncio transport that still owns the socket.
"""

import asyncio
import logging
import socket
import struct
from pathlib import Path
from typing import Any, ClassVar

from p2p_webrtc.ice import HostProtocol

log = logging.getLogger("p2p_webrtc.fastpath")

READ_BATCH = 64
"""Datagrams read per wake-up before the loop runs anything else."""
WANTED_RECEIVE_BUFFER = 4 * 1024 * 1024
"""At least 2.5 times the SCTP receive window, so that a burst is never dropped by the kernel."""
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h, Linux 4.18 and later
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000  # one UDP datagram before segmentation, headers included
DTLS_FIRST_BYTES = range(20, 64)


def receive_buffer_size(rmem_max: Path = Path("/proc/sys/net/core/rmem_max")) -> int:
    """The receive buffer to ask for: what is wanted, within ``net.core.rmem_max``."""
    try:
        limit = int(rmem_max.read_text())
    except (OSError, ValueError):
        return WANTED_RECEIVE_BUFFER  # the kernel caps it anyway
    return min(WANTED_RECEIVE_BUFFER, limit)


def gso_groups(datagrams: list[bytes]) -> list[list[bytes]]:
    """Consecutive datagrams that one GSO send can carry: equal sizes, the last may be shorter."""
    groups: list[list[bytes]] = []
    index = 0
    while index < len(datagrams):
        size = len(datagrams[index])
        group = [datagrams[index]]
        total = size
        index += 1
        while index < len(datagrams) and len(group) < GSO_MAX_SEGMENTS:
            following = len(datagrams[index])
            if following > size or total + following > GSO_MAX_BYTES:
                break
            group.append(datagrams[index])
            total += following
            index += 1
            if following < size:
                break
        groups.append(group)
    return groups


class FastHostProtocol(HostProtocol):
    """aioice's protocol for a host candidate, with the fast path's reads and sends."""

    gso: ClassVar[bool] = True
    """Whether to try UDP GSO. The kernel's refusal holds for every socket, so the first one
    turns it off for the class: ``configured`` makes one per install."""

    @staticmethod
    def configured() -> type["FastHostProtocol"]:
        """A subclass of its own, so that a GSO refusal stays within one install."""

        class ConfiguredHostProtocol(FastHostProtocol):
            gso = True

        return ConfiguredHostProtocol

    def bound(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_size())
        self._sock = sock
        self._buffer = bytearray(65536)
        self._view = memoryview(self._buffer)
        # Take the socket's reads over from the asyncio transport, which has registered its
        # own one-datagram reader by now; closing the transport removes ours. The public
        # add_reader refuses a socket a transport owns, so this uses what the transport
        # itself calls; a loop without it (not asyncio's selector loop) keeps single reads.
        loop: Any = asyncio.get_running_loop()
        if hasattr(loop, "_add_reader"):
            loop._add_reader(sock.fileno(), self._read_ready)  # replaces the transport's

    def _read_ready(self) -> None:
        receive_into, view = self._sock.recvfrom_into, self._view
        for _ in range(READ_BATCH):
            try:
                size, addr = receive_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            try:
                self.datagram_received(view[:size].tobytes(), addr)
            except Exception as exc:  # a bad datagram must not stop the reads
                log.debug("Dropped a datagram from %s: %s", addr, exc)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if data and isinstance(data, bytes) and data[0] in DTLS_FIRST_BYTES:
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            super().datagram_received(data, addr)

    # --- sending -----------------------------------------------------------------------

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        self.send_now(data, addr)

    def _queued(self) -> int:
        """Bytes the asyncio transport still holds for sending (its own buffer)."""
        return int(self.transport.get_write_buffer_size())  # type: ignore[attr-defined]

    def send_now(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._queued():
            self.transport.sendto(data, addr)  # behind what asyncio still holds, in order
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.transport.sendto(data, addr)  # asyncio keeps it until the socket is writable
        except OSError as exc:
            self.error_received(exc)

    def send_many(self, datagrams: list[bytes], addr: tuple[str, int]) -> None:
        """Datagrams in order, each run of equal sizes in one system call where GSO allows."""
        for group in gso_groups(datagrams):
            if len(group) == 1 or not self.gso or self._queued():
                for datagram in group:
                    self.send_now(datagram, addr)
                continue
            segment = struct.pack("=H", len(group[0]))
            try:
                self._sock.sendmsg(group, [(socket.SOL_UDP, UDP_SEGMENT, segment)], 0, addr)
            except (BlockingIOError, InterruptedError):
                for datagram in group:
                    self.transport.sendto(datagram, addr)
            except OSError as exc:
                type(self).gso = False  # for every socket of this install (see ``gso``)
                log.info("UDP GSO is not available here (%s): sending one datagram per call", exc)
                for datagram in group:
                    self.send_now(datagram, addr)
