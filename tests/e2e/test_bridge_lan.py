"""The bridge on a LAN: gateway, homelab and client on hosts of their own, real processes."""

import asyncio
import os
import subprocess

from lab.bridge import (
    EchoService,
    client_args,
    echo_round_trip,
)
from lab.netns import venv_bin
from tests.e2e.conftest import LanLab
from tests.support.sshd import sshd_config

ECHO_PORT = 7007


async def test_10_mb_through_forward_come_back_byte_exact(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon({"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"})
        forward, port = await lan.start_forward("echo7")
        assert await echo_round_trip(lan.client, port, 10 * 1024 * 1024)
        await daemon.logged(r"connected over host \(local host, remote host\)")
        await daemon.logged(r"closed 'echo7' \(10485760 bytes in, 10485760 bytes out\)")
        assert forward.stop() == 0
        assert daemon.stop() == 0
        assert daemon.log().rstrip().endswith("[INFO] Stopped")


async def test_20_concurrent_connections_through_one_forward(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon({"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"})
        forward, port = await lan.start_forward("echo7")
        results = await asyncio.gather(
            *(echo_round_trip(lan.client, port, 256 * 1024) for _ in range(20))
        )
        assert results == [True] * 20
        # One peer connection carried them all.
        assert daemon.log().count("offer received") == 1
        assert daemon.log().count("opened 'echo7'") == 20
        forward.stop()


async def test_an_unknown_service_is_refused_and_logged(lan: LanLab) -> None:
    daemon = await lan.start_daemon({"ssh": "tcp://127.0.0.1:22"})
    forward, port = await lan.start_forward("telnet")
    reader, writer = await asyncio.open_connection(
        sock=lan.client.socket_connected("127.0.0.1", port)
    )
    writer.write(b"hello?")
    assert await asyncio.wait_for(reader.read(), 20) == b""  # closed, nothing relayed
    writer.close()
    await daemon.logged(
        r"\[WARNING\] Refused data channel 'telnet' from \S+: no such service "
        r"\(offered: ssh, echo\)"
    )
    await forward.logged(r"The homelab closed 'telnet' \(unknown_service\)")
    forward.stop()


async def test_ssh_runs_a_command_through_pipe(lan: LanLab) -> None:
    """Debian's sshd in the homelab, ssh -o ProxyCommand='homelab-p2p pipe ssh' from the client."""
    keys = lan.workdir / "ssh"
    lan.homelab.popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(sshd_config(keys))], stderr=subprocess.DEVNULL
    )
    await lan.start_daemon({"ssh": "tcp://127.0.0.1:2200"})
    proxy = " ".join([venv_bin("homelab-p2p"), "pipe", "ssh", *client_args(lan.signaling_url)])
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(keys / "client_key"),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        f"ProxyCommand={proxy}",
        "root@homelab",
        "echo hello from $(hostname -s) over webrtc; echo $((6 * 7))",
    ]
    result = await asyncio.to_thread(lan.client.run, *ssh, check=False)
    assert result.returncode == 0, result.stderr
    assert "over webrtc" in result.stdout
    assert result.stdout.strip().endswith("42")


def test_pipe_to_a_homelab_that_is_not_connected_says_so(lan: LanLab) -> None:
    result = lan.client.run(
        venv_bin("homelab-p2p"), "pipe", "ssh", *client_args(lan.signaling_url), check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "homelab-p2p: The target (homelab_server) is not currently connected\n"
    )
    assert "Solution: start homelab_server" in result.stderr
    assert "Traceback" not in result.stderr


async def test_past_max_peers_a_client_is_refused_with_a_reason(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon({"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}, max_peers=1)
        first, port = await lan.start_forward("echo7", name="first")
        argv = [venv_bin("homelab-p2p"), "pipe", "echo7", *client_args(lan.signaling_url)]
        second = await asyncio.to_thread(lan.client.run, *argv, check=False)
        assert second.returncode == 1
        assert "the homelab refused the connection (busy)" in second.stderr
        await daemon.logged(
            r"\[WARNING\] Refused an offer from \S+: max_peers \(1\) peers are connected"
        )
        assert await echo_round_trip(lan.client, port, 64 * 1024)
        first.stop()


async def test_pipe_between_real_pipes_echoes_and_ends_cleanly(lan: LanLab) -> None:
    """stdin and stdout as pipes, as scripts and `make demo` use it (ssh hands it a socket):
    the bytes come back, and after stdin's end the command exits 0 without a traceback."""
    async with EchoService(lan.homelab, ECHO_PORT):
        await lan.start_daemon({"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"})
        argv = [venv_bin("homelab-p2p"), "pipe", "echo7", *client_args(lan.signaling_url)]
        sent = bytes(range(256)) * 256

        def round_trip() -> tuple[bytes, int, str]:
            with lan.client.popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            ) as pipe:
                assert pipe.stdin is not None
                assert pipe.stdout is not None
                assert pipe.stderr is not None
                pipe.stdin.write(sent)
                pipe.stdin.flush()
                received = b""
                while len(received) < len(sent) and (chunk := os.read(pipe.stdout.fileno(), 65536)):
                    received += chunk
                pipe.stdin.close()
                status = pipe.wait(timeout=60)
                return received, status, pipe.stderr.read().decode()

        received, status, stderr = await asyncio.to_thread(round_trip)
        assert received == sent
        assert "Traceback" not in stderr, stderr
        assert status == 0, stderr
