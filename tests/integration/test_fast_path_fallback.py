"""A fast path that cannot run leaves aiortc's standard path running, with one warning.

For each way it can fail (another aiortc or pyOpenSSL than the pinned ones, an import that
fails, a name gone from pyOpenSSL's private binding), ``install`` returns the standard path,
logs one warning line, and two peers of this process still exchange data over loopback.
"""

import asyncio
import importlib.metadata
import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport
from OpenSSL._util import lib

import p2p_webrtc as webrtc
from p2p_webrtc.datapath import DataPath, DataPathOptions
from p2p_webrtc.fastpath import dtls
from p2p_webrtc.ice import HostProtocol, IcePolicy
from p2p_webrtc.installation import PINNED
from p2p_webrtc.sctp import FlowControlledSctpTransport
from tests.support.loopback import channel_between

FALLBACK = (
    ": the fast data path is off and aiortc's standard path runs "
    "(reinstall the project to get the versions it pins)"
)


def another_version(package: str, version: str) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(
            importlib.metadata,
            "version",
            lambda name: version if name == package else PINNED[name],
        )

    return patch


def failing_import(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the next import of the package raise ModuleNotFoundError.
    monkeypatch.setitem(sys.modules, "p2p_webrtc.fastpath", None)


class LibWithout:
    """pyOpenSSL's private cffi binding (``OpenSSL._util.lib``) without one name, as the
    fast path would see it on a release that dropped it; pyOpenSSL keeps its own."""

    def __init__(self, lib: Any, missing: str) -> None:
        self._lib, self._missing = lib, missing

    def __getattr__(self, name: str) -> Any:
        if name == self._missing:
            raise AttributeError(f"no function named {name!r}")
        return getattr(self._lib, name)


def private_attribute_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dtls, "lib", LibWithout(lib, "SSL_read"))


FAILURES = {
    "aiortc": (
        another_version("aiortc", "1.17.0"),
        "aiortc 1.17.0 is installed, but the fast data path is written for aiortc 1.16.0"
        + FALLBACK,
    ),
    "pyopenssl": (
        another_version("pyOpenSSL", "26.5.0"),
        "pyOpenSSL 26.5.0 is installed, but the fast data path is written for pyOpenSSL 26.4.0"
        + FALLBACK,
    ),
    "import": (
        failing_import,
        "the fast data path failed to load (ModuleNotFoundError: import of "
        "p2p_webrtc.fastpath halted; None in sys.modules)" + FALLBACK,
    ),
    "private-attribute": (
        private_attribute_gone,
        "the fast data path failed to load (AttributeError: no function named 'SSL_read')"
        + FALLBACK,
    ),
}


async def exchange_over_loopback(policy: IcePolicy) -> Any:
    """One message each way between two peers; the receiver's SCTP transport."""
    near, far = webrtc.new_peer_connection(policy), webrtc.new_peer_connection(policy)
    try:
        channel, far_end = await channel_between(near, far)
        arrived: asyncio.Queue[bytes] = asyncio.Queue()
        far_end.on("message", arrived.put_nowait)
        channel.on("message", arrived.put_nowait)
        channel.send(b"ping")
        assert await asyncio.wait_for(arrived.get(), 10) == b"ping"
        far_end.send(b"pong")
        assert await asyncio.wait_for(arrived.get(), 10) == b"pong"
        return far_end.transport
    finally:
        await near.close()
        await far.close()


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_fast_path_that_cannot_run_leaves_the_standard_path_working(
    restore_default_install: None,  # first: it installs again once the patches are undone
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    patch, warning = FAILURES[failure]
    patch(monkeypatch)
    policy = IcePolicy()
    with caplog.at_level(logging.INFO, logger="p2p_webrtc"):
        installed = webrtc.install(policy, DataPathOptions())

    assert installed.data_path == DataPathOptions(DataPath.STANDARD)
    assert installed.dtls_transport is RTCDtlsTransport
    assert installed.sctp_transport is FlowControlledSctpTransport
    assert installed.ice_connection.host_protocol is HostProtocol
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [warning]
    transport = await exchange_over_loopback(policy)
    assert type(transport) is FlowControlledSctpTransport
