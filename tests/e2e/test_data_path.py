"""The fast data path against aiortc's standard one, under packet loss, and its aggressive option.

Every other end-to-end test of the bridge runs on the fast path (the default at both ends);
these check what only a mix of ends or a lossy link shows.
"""

import re

import pytest

from lab.bridge import EchoService, echo_round_trip
from tests.e2e.conftest import LanLab

ECHO_PORT = 7007
LOSS = "0.01"


@pytest.mark.parametrize(
    ("daemon_path", "client_path"), [("fast", "standard"), ("standard", "fast")]
)
async def test_a_fast_end_and_a_standard_end_move_data_both_ways(
    lan: LanLab, daemon_path: str, client_path: str
) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(
            {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}, data_path=daemon_path
        )
        forward, port = await lan.start_forward("echo7", "--data-path", client_path)
        assert await echo_round_trip(lan.client, port, 8 * 1024 * 1024)
        assert f"data path: {daemon_path}" in daemon.log()
        assert f"data path: {client_path}" in forward.log()
        assert forward.stop() == 0
        assert daemon.stop() == 0


def drop_udp_at_random(lan: LanLab) -> None:
    """1% of the homelab's UDP packets lost each way (netem is not in this kernel)."""
    for chain in ("INPUT", "OUTPUT"):
        lan.homelab.run(
            "iptables", "-A", chain, "-p", "udp", "-m", "statistic",
            "--mode", "random", "--probability", LOSS, "-j", "DROP",
        )  # fmt: skip


def dropped_packets(lan: LanLab) -> int:
    listing = lan.homelab.run("iptables", "-L", "-n", "-v", "-x").stdout
    return sum(int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+\d+\s+DROP", listing, re.M))


@pytest.mark.parametrize("ack_policy", ["rfc", "aggressive"])
async def test_a_transfer_under_one_percent_loss_arrives_byte_exact(
    lan: LanLab, ack_policy: str
) -> None:
    drop_udp_at_random(lan)
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(
            {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}, ack_policy=ack_policy
        )
        forward, port = await lan.start_forward("echo7", "--ack-policy", ack_policy)
        assert await echo_round_trip(lan.client, port, 20 * 1024 * 1024)
        # About 1% of some 35,000 packets each way: the transfer recovered from real losses.
        assert dropped_packets(lan) > 100
        assert f"data path: fast, {ack_policy} acknowledgements" in daemon.log()
        assert forward.stop() == 0
        assert daemon.stop() == 0
