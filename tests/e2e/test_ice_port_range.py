"""ice_port_range: the daemon's ICE sockets bind inside it, so a firewall can open exactly it."""

import asyncio
import re

from lab.bridge import (
    EchoService,
    LoggedProcess,
    client_args,
    echo_round_trip,
)
from lab.netns import venv_bin
from tests.e2e.conftest import LanLab

SERVICES = {"echo7": "tcp://127.0.0.1:7007"}


def udp_ports(lan: LanLab, daemon: LoggedProcess) -> set[int]:
    """The local UDP ports the daemon's process has open, from ss in its namespace."""
    listing = lan.homelab.run("ss", "-H", "-u", "-a", "-n", "-p").stdout
    pid = f"pid={daemon.process.pid},"
    return {
        int(re.split(r"\s+", line)[3].rsplit(":", 1)[1])
        for line in listing.splitlines()
        if pid in line
    }


async def test_every_udp_port_the_daemon_opens_is_in_the_range(lan: LanLab) -> None:
    async with EchoService(lan.homelab, 7007):
        daemon = await lan.start_daemon(SERVICES, ice_port_range=[50200, 50209])
        seen: set[int] = set()
        forwards = []
        for n in range(3):  # three clients, three peer connections, all open at once
            forward, port = await lan.start_forward("echo7", name=f"f{n}")
            forwards.append(forward)
            assert await echo_round_trip(lan.client, port, 64 * 1024)
            seen |= udp_ports(lan, daemon)
        assert len(seen) >= 3, seen
        assert all(50200 <= port <= 50209 for port in seen), seen
        for forward in forwards:
            forward.stop()


async def test_a_full_range_refuses_the_next_peer_and_says_why(lan: LanLab) -> None:
    async with EchoService(lan.homelab, 7007):
        daemon = await lan.start_daemon(SERVICES, ice_port_range=[50300, 50300])
        first, port = await lan.start_forward("echo7", name="first")
        assert await echo_round_trip(lan.client, port, 64 * 1024)
        argv = [venv_bin("homelab-p2p"), "pipe", "echo7"]
        argv += client_args(lan.signaling_url)
        second = await asyncio.to_thread(lan.client.run, *argv, check=False)
        assert second.returncode == 1
        assert "the homelab refused the connection (no_ports)" in second.stderr
        await daemon.logged(
            r"\[ERROR\] Refused the offer of \S+: "
            r"every UDP port of ice_port_range 50300-50300 is in use"
        )
        assert await echo_round_trip(lan.client, port, 64 * 1024)  # the first peer is unharmed
        first.stop()
