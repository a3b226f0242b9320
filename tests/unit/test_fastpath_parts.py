"""The fast data path's pure parts, what install puts in place, and how the fast path turns
itself off on unpinned versions."""

import importlib.metadata
import logging
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport

import p2p_webrtc as webrtc
from p2p_webrtc import fastpath
from p2p_webrtc.datapath import AckPolicy, DataPath, DataPathOptions, parse_data_path
from p2p_webrtc.fastpath.udp import (
    GSO_MAX_SEGMENTS,
    WANTED_RECEIVE_BUFFER,
    gso_groups,
    receive_buffer_size,
)
from p2p_webrtc.ice import HostProtocol, IcePolicy
from p2p_webrtc.installation import PINNED
from p2p_webrtc.sctp import FlowControlledSctpTransport


def sizes(groups: list[list[bytes]]) -> list[list[int]]:
    return [[len(datagram) for datagram in group] for group in groups]


def test_a_run_of_equal_records_is_one_gso_send_ended_by_a_shorter_one() -> None:
    datagrams = [b"x" * 1226] * 5 + [b"x" * 500, b"x" * 1226, b"x" * 60]
    assert sizes(gso_groups(datagrams)) == [[1226] * 5 + [500], [1226, 60]]


def test_a_longer_record_starts_a_new_gso_send() -> None:
    assert sizes(gso_groups([b"x" * 60, b"x" * 1226, b"x" * 1226])) == [[60], [1226, 1226]]


def test_gso_sends_stay_within_the_kernels_limits() -> None:
    many_small = gso_groups([b"x" * 100] * (GSO_MAX_SEGMENTS + 1))
    assert sizes(many_small) == [[100] * GSO_MAX_SEGMENTS, [100]]
    big = gso_groups([b"x" * 1226] * 60)
    assert all(sum(map(len, group)) <= 65000 for group in big)
    assert sum(len(group) for group in big) == 60


def test_the_receive_buffer_is_capped_by_rmem_max(tmp_path: Path) -> None:
    limit = tmp_path / "rmem_max"
    limit.write_text("212992\n")
    assert receive_buffer_size(limit) == 212992
    limit.write_text(f"{WANTED_RECEIVE_BUFFER * 4}\n")
    assert receive_buffer_size(limit) == WANTED_RECEIVE_BUFFER
    assert receive_buffer_size(tmp_path / "absent") == WANTED_RECEIVE_BUFFER


def test_bad_data_path_values_name_the_key() -> None:
    assert parse_data_path("standard", "rfc") == DataPathOptions(DataPath.STANDARD)
    assert parse_data_path("fast", "aggressive").ack_policy is AckPolicy.AGGRESSIVE
    with pytest.raises(ValueError, match=r"^data_path: 'quick' is not one of fast, standard$"):
        parse_data_path("quick", "rfc")
    with pytest.raises(ValueError, match=r"^ack_policy: 3 is not one of rfc, aggressive$"):
        parse_data_path("fast", 3)


@pytest.fixture
def restore_default_install() -> Iterator[None]:
    """Requested before ``monkeypatch``, so that it installs again after the patches are gone."""
    yield
    webrtc.install(IcePolicy())


def test_the_fast_path_puts_its_classes_in_place(restore_default_install: None) -> None:
    used = webrtc.install(IcePolicy(), DataPathOptions(ack_policy=AckPolicy.AGGRESSIVE))
    assert used.data_path == DataPathOptions(DataPath.FAST, AckPolicy.AGGRESSIVE)
    assert aiortc.rtcpeerconnection.RTCSctpTransport is used.sctp_transport  # type: ignore[attr-defined]
    assert aiortc.rtcicetransport.Connection is used.ice_connection  # type: ignore[attr-defined]
    assert issubclass(used.ice_connection.host_protocol, fastpath.FastHostProtocol)
    aggressive = used.sctp_transport
    assert issubclass(aggressive, fastpath.FastSctpTransport)
    assert aggressive.sack_every == 16
    rfc = webrtc.install(IcePolicy(), DataPathOptions()).sctp_transport
    assert issubclass(rfc, fastpath.FastSctpTransport)
    assert (rfc.sack_every, rfc.max_burst) == (2, 4)
    assert aggressive.sack_every == 16  # each install has classes of its own


def test_the_policy_travels_on_the_installed_connection_class(
    restore_default_install: None,
) -> None:
    policy = IcePolicy(port_range=(40000, 40009))
    used = webrtc.install(policy, DataPathOptions(DataPath.STANDARD))
    assert used.policy is policy
    assert used.ice_connection.policy is policy
    assert used.ice_connection.host_protocol is HostProtocol
    assert webrtc.install(IcePolicy()).ice_connection.policy == IcePolicy()
    assert used.ice_connection.policy is policy


def test_a_gso_refusal_stays_within_its_install() -> None:
    first, second = (fastpath.FastHostProtocol.configured() for _ in range(2))
    first.gso = False
    assert second.gso
    assert fastpath.FastHostProtocol.gso


def test_the_version_gate_names_the_versions_pyproject_pins() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = dict(
        requirement.split("==")
        for requirement in pyproject["project"]["dependencies"]
        if "==" in requirement
    )
    assert {name.lower(): version for name, version in PINNED.items()} == pins


def test_on_another_aiortc_version_the_standard_path_runs_with_one_warning(
    restore_default_install: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda package: "1.17.0" if package == "aiortc" else PINNED[package],
    )
    with caplog.at_level(logging.INFO, logger="p2p_webrtc"):
        used = webrtc.install(IcePolicy(), DataPathOptions())
    assert used.data_path.path is DataPath.STANDARD
    assert aiortc.rtcpeerconnection.RTCSctpTransport is FlowControlledSctpTransport  # type: ignore[attr-defined]
    assert aiortc.rtcpeerconnection.RTCDtlsTransport is RTCDtlsTransport  # type: ignore[attr-defined]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "aiortc 1.17.0 is installed, but the fast data path is written for aiortc 1.16.0: "
        "the fast data path is off and aiortc's standard path runs "
        "(reinstall the project to get the versions it pins)"
    ]


def test_the_fast_path_is_imported_only_when_chosen_and_compatible() -> None:
    # A process of its own: this one has imported the fast path already.
    script = """
import importlib.metadata, sys
import p2p_webrtc as webrtc
from p2p_webrtc.datapath import DataPath, DataPathOptions
webrtc.install(webrtc.IcePolicy(), DataPathOptions(DataPath.STANDARD))
assert "p2p_webrtc.fastpath" not in sys.modules, "imported for the standard path"
real = importlib.metadata.version
importlib.metadata.version = lambda p: "26.5.0" if p == "pyOpenSSL" else real(p)
assert webrtc.install(webrtc.IcePolicy()).data_path.path is DataPath.STANDARD
assert "p2p_webrtc.fastpath" not in sys.modules, "imported on another pyOpenSSL"
importlib.metadata.version = real
assert webrtc.install(webrtc.IcePolicy()).data_path.path is DataPath.FAST
assert "p2p_webrtc.fastpath" in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
