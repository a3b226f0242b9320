"""The client agent's socket: where it is, and one request on it. Standard library only.

A request is one line of JSON, ``{"argv": [...], "cwd": "...", ...}``, sent with the caller's
stdin, stdout and stderr as file descriptors (SCM_RIGHTS, as ssh's ControlMaster does): the
agent runs the command on them with its warm connection and answers one line,
``{"status": N}``, when the command is done. ``{"fallback": true}`` means "run it yourself"
(the agent cannot serve this configuration). The caller, ``launcher.py``, must start fast,
which is why this module imports nothing of the project.
"""

import json
import os
import socket
from pathlib import Path
from typing import Any

AGENT_ENV = "HOMELAB_P2P_AGENT"
"""``off`` in the environment: never use or start an agent (as ``--no-agent`` does)."""
SOCKET_ENV = "HOMELAB_P2P_AGENT_SOCKET"
"""Another path for the agent's socket than the default (``socket_path``)."""
HANDED_OVER = ("pipe", "fetch")
"""The commands the launcher hands to a running agent whole (``forward`` hands it each
connection it accepts)."""
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPLY_BYTES = 4096
STDIO = (0, 1, 2)


class AgentWireError(Exception):
    """The agent or its caller broke the exchange; str() says how."""


def socket_path() -> Path:
    """``$HOMELAB_P2P_AGENT_SOCKET``, else ``agent.sock`` in ``$XDG_RUNTIME_DIR/homelab-p2p``
    (``/tmp/homelab-p2p-UID`` without a runtime directory)."""
    chosen = os.environ.get(SOCKET_ENV)
    if chosen:
        return Path(chosen)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    directory = Path(runtime, "homelab-p2p") if runtime else Path(f"/tmp/homelab-p2p-{os.getuid()}")  # noqa: S108
    return directory / "agent.sock"


def prepare_directory(path: Path) -> None:
    """The socket's directory, created 0700; AgentWireError when someone else could reach
    into it (a shared /tmp where another user made it first)."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as exc:
        raise AgentWireError(f"cannot make {directory}: {exc.strerror or exc}") from None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise AgentWireError(
            f"{directory} must be the user's own and writable by nobody else; remove it, or "
            f"set {SOCKET_ENV} to a path in a private directory"
        )


def agent_allowed(argv: list[str]) -> bool:
    """Whether this command line may use an agent (``--no-agent`` and
    ``HOMELAB_P2P_AGENT=off`` say no; the configuration's ``agent: off`` is the agent's to read)."""
    return os.environ.get(AGENT_ENV, "auto") != "off" and "--no-agent" not in argv


def connect(path: Path) -> socket.socket | None:
    """A connection to the agent listening at ``path``; None when none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def encode_request(argv: list[str], **extra: Any) -> bytes:
    return json.dumps({"argv": argv, "cwd": os.getcwd(), **extra}).encode() + b"\n"


def send_request(sock: socket.socket, request: bytes, fds: tuple[int, ...] = STDIO) -> None:
    socket.send_fds(sock, [request], list(fds))


def read_reply(sock: socket.socket) -> dict[str, Any]:
    """The agent's one-line answer; AgentWireError when it ended without one."""
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(MAX_REPLY_BYTES)
        if not chunk:
            raise AgentWireError("the agent ended before the command did")
        reply += chunk
        if len(reply) > MAX_REPLY_BYTES:
            raise AgentWireError("the agent's answer is too long")
    return parse_reply(reply)


def parse_reply(reply: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(reply)
    except ValueError:
        raise AgentWireError("the agent's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise AgentWireError("the agent's answer is not an object")
    return answer


def status_of(answer: dict[str, Any]) -> int | None:
    """The exit status the agent answered; None when it said to run the command here."""
    if answer.get("fallback"):
        return None
    status = answer.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise AgentWireError(f"the agent answered no exit status: {answer!r}")
    return status
