"""Faults: signaling dies mid-transfer, the daemon restarts or crashes, connections rotate."""

import asyncio
import os

import pytest

from lab.bridge import (
    EchoService,
    echo_round_trip,
)
from tests.e2e.conftest import LanLab, lan_gateway

SERVICES = {"echo7": "tcp://127.0.0.1:7007"}


async def test_an_open_channel_outlives_the_gateway_and_the_homelab_re_registers(
    lan: LanLab, secret_file: os.PathLike[str]
) -> None:
    async with EchoService(lan.homelab, 7007):
        daemon = await lan.start_daemon(SERVICES, reconnect_max_delay=2)
        forward, port = await lan.start_forward("echo7")
        reader, writer = await asyncio.open_connection(
            sock=lan.client.socket_connected("127.0.0.1", port)
        )
        first, second = os.urandom(4 * 1024 * 1024), os.urandom(4 * 1024 * 1024)
        writer.write(first)
        assert await asyncio.wait_for(reader.readexactly(len(first)), 60) == first

        lan.gateway.kill()  # SIGKILL, mid-transfer: signaling is gone, the data channel is not
        writer.write(second)
        assert await asyncio.wait_for(reader.readexactly(len(second)), 60) == second
        await daemon.logged(r"Signaling: connection \S+ closed \(code \S+\); reconnecting")
        await daemon.logged(r"Signaling: WebSocket connection failed: cannot reach")

        mark = len(daemon.log())
        lan_gateway(lan.gateway_host, secret_file, lan.workdir / "gateway-again.log")  # type: ignore[arg-type]
        await daemon.logged(r"Registered as 'laptop': connection id", within=15, since=mark)
        writer.close()
        await writer.wait_closed()
        forward.stop()


@pytest.mark.parametrize("stop", ["restarted", "crashed"])
async def test_the_clients_next_connection_works_after_the_daemon_restarts(
    lan: LanLab, stop: str
) -> None:
    async with EchoService(lan.homelab, 7007):
        daemon = await lan.start_daemon(SERVICES)
        forward, port = await lan.start_forward("echo7")
        assert await echo_round_trip(lan.client, port, 256 * 1024)
        if stop == "restarted":
            assert daemon.stop() == 0  # systemd's restart: SIGTERM
        else:
            daemon.process.kill()
            daemon.process.wait()
        await lan.start_daemon(SERVICES, name="daemon-again")
        assert await echo_round_trip(lan.client, port, 256 * 1024)
        await forward.logged(r"negotiating a new one")
        forward.stop()


@pytest.mark.gateway_args("--max-connection-age", "16")
async def test_offers_during_a_rotation_are_answered(lan: LanLab) -> None:
    """The homelab replaces its connection (make before break) while clients connect."""
    async with EchoService(lan.homelab, 7007):
        daemon = await lan.start_daemon(SERVICES, max_connection_age=10)
        await daemon.logged(r"due for replacement", within=30)
        during, port = await lan.start_forward("echo7", name="during")
        await daemon.logged(r"now on connection \S+; closing \S+ in")
        grace, grace_port = await lan.start_forward("echo7", name="grace")
        assert await echo_round_trip(lan.client, port, 256 * 1024)
        assert await echo_round_trip(lan.client, grace_port, 256 * 1024)
        assert daemon.log().count("offer received") == 2
        assert "reconnecting" not in daemon.log()  # no gap: never without a registered connection
        assert lan.gateway.log().count("Registered 'laptop'") == 2
        during.stop()
        grace.stop()
