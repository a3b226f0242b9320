"""Across NAT routers: direct when the NATs allow it, relayed through TURN when they do not."""

import asyncio

import pytest

from lab.bridge import (
    EchoService,
    client_args,
    echo_round_trip,
)
from lab.netns import venv_bin
from tests.e2e.conftest import NatSetup
from tests.support.natlab import INET_IP, TURN_PASSWORD, TURN_USER

STUN = f"stun:{INET_IP}:3478"
TURN = f"turn:{INET_IP}:3478?transport=udp"
SERVICES = {"echo7": "tcp://127.0.0.1:7007"}


def daemon_ice(turn: bool) -> list[dict[str, str]]:
    servers = [{"urls": STUN}]
    if turn:
        servers.append({"urls": TURN, "username": TURN_USER, "credential": TURN_PASSWORD})
    return servers


def client_ice(turn: bool) -> list[str]:
    flags = ["--ice-server", STUN]
    if turn:
        flags += [
            "--ice-server",
            TURN,
            "--ice-username",
            TURN_USER,
            "--ice-credential",
            TURN_PASSWORD,
        ]
    return flags


@pytest.mark.parametrize(
    ("homelab_nat", "client_nat", "turn", "pair"),
    [
        ("cone", "cone", False, "srflx"),
        ("symmetric", "symmetric", True, "relay"),
        ("symmetric", "cone", True, "relay"),
    ],
)
async def test_connects_and_says_how(
    nat_lab: NatSetup, homelab_nat: str, client_nat: str, turn: bool, pair: str
) -> None:
    nat_lab.nat.mode("nat1", homelab_nat)
    nat_lab.nat.mode("nat2", client_nat)
    async with EchoService(nat_lab.nat.homelab, 7007):
        daemon = await nat_lab.start_daemon(SERVICES, ice_servers=daemon_ice(turn))
        forward, port = await nat_lab.start_forward("echo7", *client_ice(turn))
        assert await echo_round_trip(nat_lab.nat.client, port, 1024 * 1024)
        match = await daemon.logged(r"connected over (\w+) \(local (\w+), remote (\w+)\)")
        assert match.group(1) == pair, daemon.log()
        forward.stop()


async def test_symmetric_nats_without_turn_fail_with_the_guides_advice(nat_lab: NatSetup) -> None:
    nat_lab.nat.mode("nat1", "symmetric")
    nat_lab.nat.mode("nat2", "symmetric")
    await nat_lab.start_daemon(SERVICES, ice_servers=daemon_ice(False))
    argv = [
        venv_bin("homelab-p2p"),
        "pipe",
        "echo7",
        *client_args(nat_lab.signaling_url, *client_ice(False)),
    ]
    argv[argv.index("--timeout") + 1] = "6"
    result = await asyncio.to_thread(nat_lab.nat.client.run, *argv, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("homelab-p2p: ICE: WebRTC connection timeout: no network path")
    assert "configure a TURN server" in result.stderr
    assert "Traceback" not in result.stderr


async def test_every_configured_server_is_used_not_only_the_first(nat_lab: NatSetup) -> None:
    """aiortc alone asks only the first STUN and the first TURN server; here the first of each
    is useless (nothing listens / wrong password) and the connection still finds its way."""
    nat_lab.nat.mode("nat1", "symmetric")
    nat_lab.nat.mode("nat2", "cone")
    dead_stun = f"stun:{INET_IP}:3999"
    wrong_turn = {"urls": TURN, "username": TURN_USER, "credential": "not-the-password"}
    ice = [{"urls": dead_stun}, {"urls": STUN}, wrong_turn, *daemon_ice(True)[1:]]
    async with EchoService(nat_lab.nat.homelab, 7007):
        daemon = await nat_lab.start_daemon(SERVICES, ice_servers=ice)
        turn = TURN.partition("?")[0]
        assert f"ICE servers: {dead_stun}, {STUN}, {turn}, {turn};" in daemon.log()
        flags = ["--ice-server", dead_stun, *client_ice(False)]
        forward, port = await nat_lab.start_forward("echo7", *flags)
        assert await echo_round_trip(nat_lab.nat.client, port, 256 * 1024)
        match = await daemon.logged(r"connected over (\w+) \(local (\w+), remote (\w+)\)")
        assert match.group(1) == "relay", daemon.log()  # the second TURN server's allocation
        forward.stop()
