"""A client that exits says ``bye`` over signaling: the homelab drops its peer at once,
not ~30 s later when ICE consent runs out. Real gateway, daemon and CLI processes."""

import asyncio
import re
import signal
import subprocess

from lab.bridge import EchoService, LoggedProcess, client_args, echo_round_trip
from lab.netns import venv_bin
from tests.e2e.conftest import LanLab
from tests.e2e.test_status import snapshot

ECHO_PORT = 7007
SERVICES = {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}
CONNECTED = r"Peer (\S+): connected over"
BYE_WITHIN = 10.0
"""The drop follows the bye in milliseconds; consent would take ~30 s, past this deadline."""


def said_bye(peer: str) -> str:
    """The daemon's line for ``peer`` dropped on its client's bye (homelab_server/peers.py)."""
    return rf"\[INFO\] Peer {re.escape(peer)}: closing, the client said bye \(0 peers left\)"


async def echoing_pipe(
    lan: LanLab, daemon: LoggedProcess, line: bytes
) -> tuple[asyncio.subprocess.Process, str]:
    """A ``pipe`` to the echo service that has echoed ``line``, and the daemon's id of its peer."""
    argv = [venv_bin("homelab-p2p"), "pipe", "echo7", *client_args(lan.signaling_url)]
    pipe = await asyncio.create_subprocess_exec(
        *lan.client.command(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert pipe.stdin is not None
    assert pipe.stdout is not None
    pipe.stdin.write(line)
    await pipe.stdin.drain()
    assert await asyncio.wait_for(pipe.stdout.readline(), 30) == line
    return pipe, (await daemon.logged(CONNECTED)).group(1)


async def test_pipe_says_bye_when_its_stdin_ends(lan: LanLab) -> None:
    socket = lan.workdir / "status.sock"
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(SERVICES, status_socket=str(socket))
        pipe, peer = await echoing_pipe(lan, daemon, b"one line, then bye\n")
        assert pipe.stdin is not None
        pipe.stdin.close()
        _, stderr = await asyncio.wait_for(pipe.communicate(), 30)
        assert pipe.returncode == 0, stderr.decode()

        await daemon.logged(said_bye(peer), within=BYE_WITHIN)
        assert (await snapshot(lan.homelab, socket))["peers"] == []


async def test_pipe_says_bye_when_ssh_hangs_it_up(lan: LanLab) -> None:
    """OpenSSH ends its ProxyCommand with SIGHUP, stdin still open."""
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(SERVICES)
        pipe, peer = await echoing_pipe(lan, daemon, b"a line before the hang-up\n")

        pipe.send_signal(signal.SIGHUP)
        _, stderr = await asyncio.wait_for(pipe.communicate(), 30)
        assert pipe.returncode == 128 + signal.SIGHUP, stderr.decode()
        assert b"Traceback" not in stderr
        await daemon.logged(said_bye(peer), within=BYE_WITHIN)


async def test_forward_says_bye_on_sigint(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(SERVICES)
        forward, port = await lan.start_forward("echo7")
        assert await echo_round_trip(lan.client, port, 64 * 1024)
        peer = (await daemon.logged(CONNECTED)).group(1)

        forward.process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(exit_status, forward) == 0, forward.log()
        assert "Traceback" not in forward.log()
        await daemon.logged(said_bye(peer), within=BYE_WITHIN)


def exit_status(process: LoggedProcess) -> int:
    return process.process.wait(timeout=30)
