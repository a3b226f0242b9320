"""The fast data path: the same packets as aiortc's, for a fraction of the CPU.

aiortc spends about 150 microseconds of Python per data packet, spread over the event loop,
aioice, pyOpenSSL and its SCTP (docs/performance.md has the profile). This package removes
the biggest of those costs layer by layer, each in one subclass that ``webrtc.install``
puts in place of aiortc's or aioice's class:

- ``udp.FastHostProtocol``: batched reads, RFC 7983 demultiplexing, direct and GSO sends,
  a larger socket receive buffer;
- ``dtls.FastDtlsTransport``: records through OpenSSL with preallocated buffers;
- ``sctp.FastSctpTransport``: delayed SACKs, a due-only retransmit scan, in-order receive.

They reach into aiortc 1.16.0 and aioice 0.13.0 internals, so ``compatible()`` says
whether the installed versions are those; on any other version the standard path runs.
"""

import importlib.metadata

from p2p_webrtc.datapath import AckPolicy
from p2p_webrtc.fastpath.dtls import FastDtlsTransport
from p2p_webrtc.fastpath.sctp import FastSctpTransport
from p2p_webrtc.fastpath.udp import FastHostProtocol

__all__ = [
    "PINNED",
    "FastDtlsTransport",
    "FastHostProtocol",
    "FastSctpTransport",
    "incompatibility",
]

PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0"}


def incompatibility() -> str | None:
    """Why the fast path cannot run with the installed packages, or None if it can."""
    for package, version in PINNED.items():
        found = importlib.metadata.version(package)
        if found != version:
            return (
                f"{package} {found} is installed, but the fast data path is written for "
                f"{package} {version}"
            )
    return None


def configure(ack_policy: AckPolicy) -> None:
    FastSctpTransport.configure(ack_policy)
