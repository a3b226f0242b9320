"""``install``: the classes aiortc and aioice build peer connections from, chosen at start-up.

The configuration travels on the classes themselves (subclasses made per install, see
``BridgeIceConnection.configured``) and on the ``Installation`` returned to the caller;
nothing in this package keeps it in a module variable. The fast data path is imported
only when it is asked for and the installed aiortc, aioice and pyOpenSSL are the pinned
versions; if it still fails to load, the standard path runs, with one warning either way.
"""

import importlib.metadata
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
from aiortc import RTCIceServer
from aiortc.rtcdtlstransport import RTCDtlsTransport

from p2p_webrtc.datapath import AckPolicy, DataPath, DataPathOptions
from p2p_webrtc.ice import BridgeIceConnection, HostProtocol, IcePolicy
from p2p_webrtc.sctp import FlowControlledSctpTransport

if TYPE_CHECKING:
    from p2p_webrtc.fastpath import FastPath

log = logging.getLogger("p2p_webrtc")

PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0", "pyOpenSSL": "26.4.0"}
"""What the fast data path is written for: the exact versions pyproject.toml pins."""


@dataclass(frozen=True)
class Installation:
    """What ``install`` put in place: the caller keeps it (nothing reads it back)."""

    policy: IcePolicy
    data_path: DataPathOptions
    """The data path that runs: the standard one if the fast one was asked for but cannot."""
    ice_connection: type[BridgeIceConnection]
    dtls_transport: type[RTCDtlsTransport]
    sctp_transport: type[FlowControlledSctpTransport]


def install(policy: IcePolicy, data_path: DataPathOptions | None = None) -> Installation:
    """Puts the seams in place for the peer connections created from now on."""
    wanted = data_path or DataPathOptions()
    fast = _fast_path(wanted.ack_policy) if wanted.path is DataPath.FAST else None
    if fast is not None:
        installation = Installation(
            policy,
            wanted,
            BridgeIceConnection.configured(policy, fast.host_protocol),
            fast.dtls_transport,
            fast.sctp_transport,
        )
    else:
        installation = Installation(
            policy,
            wanted if wanted.path is DataPath.STANDARD else DataPathOptions(DataPath.STANDARD),
            BridgeIceConnection.configured(policy, HostProtocol),
            RTCDtlsTransport,
            FlowControlledSctpTransport,
        )
    _put_in_place(installation)
    return installation


def _put_in_place(installation: Installation) -> None:
    """The only assignments into aiortc's modules. aiortc builds ICE connections, DTLS and
    SCTP transports by module-level name (``Connection(...)`` in rtcicetransport,
    ``RTCDtlsTransport(...)`` and ``RTCSctpTransport(...)`` in rtcpeerconnection) and has no
    parameter to pass classes in, so rebinding those names is the only way to choose them."""
    ice_module: Any = aiortc.rtcicetransport
    ice_module.Connection = installation.ice_connection
    # Never aiortc's implicit public STUN server: only what the policy names is used.
    gatherer = ice_module.RTCIceGatherer
    gatherer.getDefaultIceServers = staticmethod(_no_default_servers)
    pc_module: Any = aiortc.rtcpeerconnection
    pc_module.RTCDtlsTransport = installation.dtls_transport
    pc_module.RTCSctpTransport = installation.sctp_transport


def _no_default_servers() -> list[RTCIceServer]:
    return []


def _fast_path(ack_policy: AckPolicy) -> "FastPath | None":
    """The fast path's classes; None, after one warning, when they cannot run here."""
    reason = incompatibility()
    if reason is None:
        try:
            # Imported here: an unpinned aiortc or pyOpenSSL may break it at import time.
            import p2p_webrtc.fastpath  # noqa: PLC0415

            return p2p_webrtc.fastpath.fast_path(ack_policy)
        except Exception as exc:  # whatever breaks the fast path, the standard one runs
            reason = f"the fast data path failed to load ({type(exc).__name__}: {exc})"
    log.warning(
        "%s: the fast data path is off and aiortc's standard path runs "
        "(reinstall the project to get the versions it pins)",
        reason,
    )
    return None


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
