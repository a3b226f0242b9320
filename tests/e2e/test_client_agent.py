"""The client agent (docs/client.md): `pipe`, `fetch` and `forward` through one warm
connection, as users start them: the first `pipe` starts the agent, the rest reuse it."""

import asyncio
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from lab.bridge import EchoService, LoggedProcess, client_args, echo_round_trip
from lab.netns import venv_bin
from tests.e2e.conftest import LanLab
from tests.support.webapp import BIG, web_app

ECHO_PORT = 7007
SERVICES = {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}", "web": "http://127.0.0.1:8080"}


def with_agent(lan: LanLab, *argv: str) -> list[str]:
    """``argv`` run with the agent on, its socket in the test's directory."""
    return [
        "env",
        "HOMELAB_P2P_AGENT=auto",
        f"HOMELAB_P2P_AGENT_SOCKET={agent_socket(lan)}",
        *argv,
    ]


def agent_socket(lan: LanLab) -> Path:
    return lan.workdir / "agent" / "agent.sock"


def homelab_p2p(lan: LanLab, *args: str) -> list[str]:
    return with_agent(lan, venv_bin("homelab-p2p"), *args)


@dataclass
class Exchange:
    returncode: int
    stdout: str
    stderr: str


async def pipe(lan: LanLab, service: str, data: str, *flags: str) -> Exchange:
    """``homelab-p2p pipe``, as ssh uses it: writes ``data``, reads as much back (an echo),
    and only then closes stdin (a pipe ends at the end of stdin)."""
    argv = homelab_p2p(lan, "pipe", service, *client_args(lan.signaling_url), *flags)
    return await asyncio.to_thread(_exchange, lan.client.command(argv), data)


def _exchange(argv: list[str], data: str) -> Exchange:
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdin.write(data.encode())
        process.stdin.flush()
        echoed = b""
        while len(echoed) < len(data):
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            echoed += chunk
        process.stdin.close()
        echoed += process.stdout.read()
        stderr = process.stderr.read()
        returncode = process.wait(timeout=60)
    return Exchange(returncode, echoed.decode(), stderr.decode())


async def stop_agent(lan: LanLab) -> None:
    stopped = await asyncio.to_thread(lan.client.run, *homelab_p2p(lan, "agent", "--stop"))
    assert stopped.stdout == f"Stopped the agent at {agent_socket(lan)}\n"
    assert not agent_socket(lan).exists()


async def test_pipes_share_one_connection_through_the_agent(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(SERVICES)
        for index in range(3):
            line = f"line {index}\n" * 1000
            result = await pipe(lan, "echo7", line)
            assert (result.returncode, result.stdout, result.stderr) == (0, line, "")
        # The first pipe started the agent; one peer connection carried all three.
        assert daemon.log().count("offer received") == 1
        assert daemon.log().count("opened 'echo7'") == 3
        socket_mode = agent_socket(lan).stat().st_mode
        assert stat.S_ISSOCK(socket_mode)
        assert stat.S_IMODE(socket_mode) == 0o600
        assert stat.S_IMODE(agent_socket(lan).parent.stat().st_mode) == 0o700
        log = (agent_socket(lan).parent / "agent.log").read_text()
        assert f"Listening at {agent_socket(lan)}" in log
        await stop_agent(lan)


async def test_the_agent_says_what_the_direct_path_says(lan: LanLab) -> None:
    """A refusal reaches the caller's stderr, word for word, with the same exit status."""
    daemon = await lan.start_daemon(SERVICES)
    through_agent = await pipe(lan, "telnet", "hello?\n")
    direct = await pipe(lan, "telnet", "hello?\n", "--no-agent")
    assert through_agent.returncode == direct.returncode == 1
    assert through_agent.stderr == direct.stderr
    assert "homelab-p2p: the homelab closed 'telnet': this homelab offers no" in direct.stderr
    assert agent_socket(lan).exists()  # it was used, not bypassed
    again = await pipe(lan, "telnet", "hello?\n")
    assert (again.returncode, again.stderr) == (1, direct.stderr)
    # A refusal is an answer: the warm connection stays (the agent's one offer, the direct's).
    assert daemon.log().count("offer received") == 2
    bad = await pipe(lan, "echo7", "", "--timeout", "-1")
    assert bad.returncode == 2
    assert bad.stderr == "homelab-p2p: timeout: -1.0 is not a positive number of seconds\n"
    await stop_agent(lan)


async def test_fetch_and_forward_go_through_the_agent(lan: LanLab) -> None:
    async with web_app(lan.homelab, 8080), EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(SERVICES)
        out = lan.workdir / "big.bin"
        argv = homelab_p2p(lan, "fetch", "web", "/big", "-o", "big.bin")
        argv += client_args(lan.signaling_url)
        # A relative -o is the caller's directory's, not the agent's.
        fetched = await asyncio.to_thread(
            subprocess.run,
            lan.client.command(argv),
            cwd=lan.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (fetched.returncode, fetched.stderr) == (0, "")
        assert out.read_bytes() == BIG

        forward_argv = homelab_p2p(
            lan, "forward", "echo7", "--listen", "127.0.0.1:0", *client_args(lan.signaling_url)
        )
        forward = LoggedProcess(lan.client, forward_argv, lan.workdir / "forward.log")
        line = await asyncio.to_thread(forward.next_line)
        port = int(line.split()[1].rpartition(":")[2])
        assert await echo_round_trip(lan.client, port, 1024 * 1024)
        # forward checked the homelab with a connection of its own; the agent's carried both
        # the fetch and the forwarded connection.
        assert daemon.log().count("offer received") == 2
        agent_log = (agent_socket(lan).parent / "agent.log").read_text()
        assert agent_log.count("New session") == 1
        forward.stop()
        await daemon.logged(r"closed 'echo7' \(1048576 bytes in, 1048576 bytes out\)")
        await stop_agent(lan)


async def test_the_agent_forward_starts_is_not_its_child(lan: LanLab) -> None:
    """forward runs for long: were the agent its child, the agent's end (stopped, idle) would
    leave a zombie behind it until forward ended."""
    async with EchoService(lan.homelab, ECHO_PORT):
        await lan.start_daemon(SERVICES)
        forward_argv = homelab_p2p(
            lan, "forward", "echo7", "--listen", "127.0.0.1:0", *client_args(lan.signaling_url)
        )
        forward = LoggedProcess(lan.client, forward_argv, lan.workdir / "forward.log")
        line = await asyncio.to_thread(forward.next_line)
        assert agent_socket(lan).exists()  # forward started it
        assert psutil.Process(forward.process.pid).children() == []
        await stop_agent(lan)
        # Without the agent, forward carries connections on its own.
        port = int(line.split()[1].rpartition(":")[2])
        assert await echo_round_trip(lan.client, port, 1024)
        assert psutil.Process(forward.process.pid).children() == []
        assert forward.stop() == 0


async def test_an_idle_agent_ends_by_itself(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        await lan.start_daemon(SERVICES)
        agent = lan.client.popen(
            homelab_p2p(lan, "agent", "--idle-timeout", "1"),
            stderr=subprocess.PIPE,
            text=True,
        )
        result = await pipe(lan, "echo7", "once\n")
        assert (result.returncode, result.stdout) == (0, "once\n")
        _, log = await asyncio.to_thread(agent.communicate, timeout=30)
    assert agent.returncode == 0
    assert "[INFO] No command for 1 s; the agent ends" in log
    assert not agent_socket(lan).exists()


async def test_hostile_requests_get_a_line_and_the_agent_serves_on(lan: LanLab) -> None:
    """Garbage, a request without stdio, a huge one: each refused, none stops the agent."""
    async with EchoService(lan.homelab, ECHO_PORT):
        await lan.start_daemon(SERVICES)
        agent = lan.client.popen(homelab_p2p(lan, "agent"), stderr=subprocess.PIPE, text=True)
        first = await pipe(lan, "echo7", "warm\n")  # waits for nothing: it may start its own
        assert first.returncode == 0
        attack = (
            "import socket, sys\n"
            "def send(data, fds=()):\n"
            "    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "    try:\n"
            "        socket.send_fds(s, [data], list(fds))\n"
            "        s.shutdown(socket.SHUT_WR); print(repr(s.recv(100)))\n"
            "    except OSError:\n"
            "        print('closed')\n"
            "    s.close()\n"
            "send(b'not a length\\n', (0, 1, 2))\n"
            "send(b'9\\n1\\0/\\0\\0pipe', ())\n"  # a command without stdio
            "send(b'9\\n2\\0/\\0\\0pipe', (0, 1, 2))\n"  # another version's
            "send(b'99999999\\n' + b'x' * 200000)\n"
        )
        result = await asyncio.to_thread(
            lan.client.run, venv_bin("python"), "-c", attack, str(agent_socket(lan))
        )
        answers = result.stdout.splitlines()
        assert answers[:3] == ["b''", "b'status 2\\n'", "b''"]
        assert answers[3] in ("b''", "closed")  # cut off at the limit, maybe mid-send
        after = await pipe(lan, "echo7", "still here\n")
        assert (after.returncode, after.stdout) == (0, "still here\n")
        await stop_agent(lan)
        _, log = await asyncio.to_thread(agent.communicate, timeout=30)
    assert log.count("Refused a command: the request does not start with its length") == 2
    assert "Refused a command: it came with 0 file descriptors, not 3" in log
    assert "Refused a command: the request is not one of this version's" in log
    assert "Traceback" not in log
