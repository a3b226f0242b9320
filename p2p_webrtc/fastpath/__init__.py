"""The fast data path: the same packets as aiortc's, for a fraction of the CPU.

aiortc spends about 150 microseconds of Python per data packet, spread over the event loop,
aioice, pyOpenSSL and its SCTP (docs/performance.md has the profile). This package removes
the biggest of those costs layer by layer, each in one subclass that ``webrtc.install``
puts in place of aiortc's or aioice's class:

- ``udp.FastHostProtocol``: batched reads, RFC 7983 demultiplexing, direct and GSO sends,
  a larger socket receive buffer;
- ``dtls.FastDtlsTransport``: records through OpenSSL with preallocated buffers;
- ``sctp.FastSctpTransport``: delayed SACKs, a due-only retransmit scan, in-order receive.

They reach into aiortc 1.16.0, aioice 0.13.0 and pyOpenSSL 26.4.0 internals, so
``webrtc.install`` imports this package only when the installed versions are those, and
runs aiortc's standard path when they are not or when ``fast_path`` fails.
"""

from dataclasses import dataclass

from p2p_webrtc.datapath import AckPolicy
from p2p_webrtc.fastpath.dtls import FastDtlsTransport, check_pyopenssl
from p2p_webrtc.fastpath.sctp import FastSctpTransport
from p2p_webrtc.fastpath.udp import FastHostProtocol

__all__ = [
    "FastDtlsTransport",
    "FastHostProtocol",
    "FastPath",
    "FastSctpTransport",
    "fast_path",
]


@dataclass(frozen=True)
class FastPath:
    """The classes of one install of the fast path."""

    host_protocol: type[FastHostProtocol]
    dtls_transport: type[FastDtlsTransport]
    sctp_transport: type[FastSctpTransport]


def fast_path(ack_policy: AckPolicy) -> FastPath:
    """Fresh classes for one install; AttributeError if pyOpenSSL lacks what they use."""
    check_pyopenssl()
    return FastPath(
        host_protocol=FastHostProtocol.configured(),
        dtls_transport=FastDtlsTransport,
        sctp_transport=FastSctpTransport.configured(ack_policy),
    )
