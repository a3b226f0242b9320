"""``homelab-p2p status`` beside a running daemon in the LAN lab, as an operator types it."""

import asyncio
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

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
