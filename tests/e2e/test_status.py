"""``homelab-p2p status`` beside a running daemon in the LAN lab, as an operator types it."""

import asyncio
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lab.bridge import EchoService, client_args, echo_round_trip
from lab.netns import Namespace, venv_bin
from lab.waiting import eventually
from tests.e2e.conftest import GATEWAY_IP, LanLab

ECHO_PORT = 7007


async def status(homelab: Namespace, socket: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [venv_bin("homelab-p2p"), "status", "--socket", str(socket), *flags]
    return await asyncio.to_thread(homelab.run, *argv, check=False)


async def snapshot(homelab: Namespace, socket: Path) -> dict[str, Any]:
    answer = await status(homelab, socket, "--json")
    assert answer.returncode in (0, 1), answer.stderr
    document: dict[str, Any] = json.loads(answer.stdout)
    return document


async def test_status_shows_the_registration_each_peer_and_the_refusals(lan: LanLab) -> None:
    socket = lan.workdir / "status.sock"
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(
            {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}, status_socket=str(socket), max_peers=1
        )
        assert stat.S_IMODE(socket.stat().st_mode) == 0o660  # the daemon's group, nobody else
        idle = await snapshot(lan.homelab, socket)
        assert idle["name"] == "laptop"
        assert idle["signaling"]["registered"] is True
        assert idle["signaling"]["url"] == lan.signaling_url
        assert idle["services"] == ["echo7"]
        assert (idle["peers"], idle["offers_refused"]) == ([], {})

        forward, port = await lan.start_forward("echo7")
        assert await echo_round_trip(lan.client, port, 1024 * 1024)
        argv = [venv_bin("homelab-p2p"), "pipe", "echo7", *client_args(lan.signaling_url)]
        refused = await asyncio.to_thread(lan.client.run, *argv, check=False)
        assert "refused the connection (busy)" in refused.stderr

        busy = await snapshot(lan.homelab, socket)
        [peer] = busy["peers"]
        assert (peer["state"], peer["pair"]) == ("connected", "host")
        # The echo's megabyte, both ways, with the SCTP and DTLS overhead on top.
        assert 1024 * 1024 < peer["bytes_received"] < 1.2 * 1024 * 1024
        assert 1024 * 1024 < peer["bytes_sent"] < 1.2 * 1024 * 1024
        assert peer["round_trip_ms"] > 0
        assert peer["client"] == "e2e"
        assert busy["offers_refused"] == {"busy": 1}

        shown = await status(lan.homelab, socket)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].startswith(f"laptop: registered at ws://{GATEWAY_IP}:8765/prod for ")
        assert "offers refused since start: 1 busy" in lines[2]
        assert lines[3].split() == [
            "CLIENT",
            "CREDENTIAL",
            "PAIR",
            "AGE",
            "CHANNELS",
            "IN",
            "OUT",
            "RTT",
        ]
        assert lines[4].split()[:3] == ["e2e", peer["credential"], "host"]
        forward.stop()

        # Signaling gone: the daemon says so, and status exits 1 with the reason.
        lan.gateway.stop()

        async def unregistered() -> subprocess.CompletedProcess[str] | None:
            answer = await status(lan.homelab, socket)
            return answer if answer.returncode == 1 else None

        answer = await eventually(unregistered, "status saying the daemon is not registered")
        assert answer is not None
        assert answer.stdout.startswith(f"laptop: NOT registered at {lan.signaling_url}: ")
        assert daemon.stop() == 0
        assert not socket.exists()

    gone = await status(lan.homelab, socket)
    assert gone.returncode == 2
    assert gone.stderr.startswith(f"homelab-p2p: no daemon answers at {socket}: ")


class Metrics:
    """The daemon's metrics as Prometheus reads them."""

    def __init__(self, text: str) -> None:
        self._values = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self._values[name, tuple(sorted(labels.items()))]


async def scrape(homelab: Namespace, port: int) -> Metrics:
    url = f"http://127.0.0.1:{port}/metrics"
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=10).read().decode())"
    answer = await asyncio.to_thread(homelab.run, venv_bin("python"), "-c", fetch)
    return Metrics(answer.stdout)


async def test_metrics_move_with_a_connection_its_bytes_and_a_refusal(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(
            {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}, metrics_address="127.0.0.1:9808", max_peers=1
        )
        await daemon.logged(r"Metrics: http://127.0.0.1:9808/metrics")
        idle = await scrape(lan.homelab, 9808)
        assert idle("homelab_p2p_signaling_registered") == 1
        assert idle("homelab_p2p_signaling_registrations_total") == 1
        assert idle("homelab_p2p_data_path", path="fast", ack_policy="rfc") == 1
        assert idle("homelab_p2p_peers", pair="host") == 0

        forward, port = await lan.start_forward("echo7")
        assert await echo_round_trip(lan.client, port, 300_000)
        argv = [venv_bin("homelab-p2p"), "pipe", "echo7", *client_args(lan.signaling_url)]
        await asyncio.to_thread(lan.client.run, *argv, check=False)  # refused: busy
        await daemon.logged(r"closed 'echo7' \(300000 bytes in, 300000 bytes out\)")

        busy = await scrape(lan.homelab, 9808)
        assert busy("homelab_p2p_peers", pair="host") == 1
        assert busy("homelab_p2p_peers_connected_total", pair="host") == 1
        assert busy("homelab_p2p_channels_opened_total", service="echo7", pair="host") == 1
        for direction in ("in", "out"):
            moved = busy("homelab_p2p_service_bytes_total", service="echo7", direction=direction)
            assert moved == 300_000
        assert busy("homelab_p2p_offers_refused_total", reason="busy") == 1
        forward.stop()
        assert daemon.stop() == 0
