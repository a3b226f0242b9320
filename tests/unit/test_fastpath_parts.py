"""The fast data path's pure parts, and how it turns itself off on unpinned aiortc versions."""

import importlib.metadata
import logging
from collections.abc import Iterator
from pathlib import Path

import aiortc.rtcpeerconnection
import pytest

import p2p_webrtc as webrtc
from p2p_webrtc import fastpath
from p2p_webrtc.datapath import AckPolicy, DataPath, DataPathOptions, parse_data_path
from p2p_webrtc.fastpath.udp import (
    GSO_MAX_SEGMENTS,
    WANTED_RECEIVE_BUFFER,
    gso_groups,
    receive_buffer_size,
)
from p2p_webrtc.ice import IcePolicy
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
    yield
    webrtc.install(IcePolicy())


def test_the_fast_path_puts_its_classes_in_place(restore_default_install: None) -> None:
    used = webrtc.install(IcePolicy(), DataPathOptions(ack_policy=AckPolicy.AGGRESSIVE))
    assert used == DataPathOptions(DataPath.FAST, AckPolicy.AGGRESSIVE)
    assert aiortc.rtcpeerconnection.RTCSctpTransport is fastpath.FastSctpTransport  # type: ignore[attr-defined]
    assert fastpath.FastSctpTransport.sack_every == 16
    webrtc.install(IcePolicy(), DataPathOptions())
    assert fastpath.FastSctpTransport.sack_every == 2
    assert fastpath.FastSctpTransport.max_burst == 4


def test_on_another_aiortc_version_the_standard_path_runs_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    restore_default_install: None,
) -> None:
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda package: "1.17.0" if package == "aiortc" else "0.13.0",
    )
    with caplog.at_level(logging.INFO, logger="p2p_webrtc"):
        used = webrtc.install(IcePolicy(), DataPathOptions())
    assert used.path is DataPath.STANDARD
    assert aiortc.rtcpeerconnection.RTCSctpTransport is FlowControlledSctpTransport  # type: ignore[attr-defined]
    assert aiortc.rtcpeerconnection.RTCDtlsTransport is webrtc.STANDARD_DTLS  # type: ignore[attr-defined]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "aiortc 1.17.0 is installed, but the fast data path is written for aiortc 1.16.0: "
        "the fast data path is off and aiortc's standard path runs "
        "(reinstall the project to get the versions it pins)"
    ]
