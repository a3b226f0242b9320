"""The launcher: `pipe` and `fetch` go to a running client agent before any heavy import,
and everything else (or no agent) goes to the CLI."""

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from homelab_p2p import agentwire, launcher


def test_the_fast_path_imports_nothing_heavy() -> None:
    """What `ssh`'s ProxyCommand pays for before the agent answers: the standard library."""
    code = (
        "import sys, homelab_p2p.launcher\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('homelab_p2p', 'p2p_webrtc', 'p2p_runtime', 'p2p_protocol', 'aiortc', 'aioice', "
        "'yaml', 'cryptography', 'websockets', 'asyncio'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == ["homelab_p2p", "homelab_p2p.agentwire", "homelab_p2p.launcher"]


@pytest.fixture
def agent_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "agent" / "agent.sock"
    monkeypatch.setenv(agentwire.SOCKET_ENV, str(path))
    monkeypatch.setenv(agentwire.AGENT_ENV, "auto")
    return path


def fake_agent(path: Path, answer: bytes | None) -> Iterator[list[dict[str, object]]]:
    """A real Unix socket answering one request with ``answer`` (None: closing at once)."""
    agentwire.prepare_directory(str(path))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    requests: list[dict[str, object]] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
            length, _, payload = data.partition(b"\n")
            assert int(length) == len(payload)
            cwd, command, argv = agentwire.decode_request(payload)
            requests.append({"cwd": cwd, "command": command, "argv": argv, "fds": len(fds)})
            for fd in fds:
                socket.close(fd)
            if answer is not None:
                conn.sendall(answer)

    thread = threading.Thread(target=serve)
    thread.start()
    yield requests
    thread.join(timeout=10)
    server.close()


@pytest.fixture
def answering(
    agent_path: Path, request: pytest.FixtureRequest
) -> Iterator[list[dict[str, object]]]:
    yield from fake_agent(agent_path, request.param)


@pytest.mark.parametrize("answering", [b"status 7\n"], indirect=True)
def test_a_running_agent_gets_the_command_line_and_stdio_and_answers_the_status(
    answering: list[dict[str, object]],
) -> None:
    assert launcher.through_running_agent(["pipe", "ssh", "--target", "lab"]) == 7
    [request] = answering
    assert request["argv"] == ["pipe", "ssh", "--target", "lab"]
    assert request["cwd"] == str(Path.cwd())
    assert request["fds"] == 3
    assert request["command"] == ""


@pytest.mark.parametrize("answering", [b"fallback\n"], indirect=True)
def test_an_agent_that_cannot_serve_it_leaves_it_to_the_cli(
    answering: list[dict[str, object]],
) -> None:
    assert launcher.through_running_agent(["fetch", "web", "/"]) is None


@pytest.mark.parametrize("answering", [None, b"nonsense\n", b"status zero\n"], indirect=True)
def test_an_agent_that_breaks_off_is_one_line_and_status_1(
    answering: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert launcher.through_running_agent(["pipe", "ssh"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("homelab-p2p: the client agent failed: ")
    assert err.count("\n") == 1


def test_without_an_agent_or_for_other_commands_the_cli_runs_it(
    agent_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert launcher.through_running_agent(["pipe", "ssh"]) is None  # none listens
    assert launcher.through_running_agent(["forward", "ssh", "--listen", ":2222"]) is None
    assert launcher.through_running_agent(["pipe", "ssh", "--no-agent"]) is None
    monkeypatch.setenv(agentwire.AGENT_ENV, "off")
    assert launcher.through_running_agent(["pipe", "ssh"]) is None


def test_a_directory_others_may_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(agentwire.AgentWireError, match="writable by nobody else"):
        agentwire.prepare_directory(str(shared / "agent.sock"))
    agentwire.prepare_directory(str(tmp_path / "mine" / "agent.sock"))
    assert (tmp_path / "mine").stat().st_mode & 0o777 == 0o700
