"""The client agent's socket: where it is, and one request on it. ``os``, ``_socket``, ``sys``.

A request is the caller's command line and directory, sent with its stdin, stdout and
stderr as file descriptors (SCM_RIGHTS, as ssh's ControlMaster does): the agent runs the
command on them with its warm connection and answers with the exit status once the command
is done, or "fallback": run it yourself (the agent cannot serve this configuration).

The caller is ``launcher.py``, which must start fast: ssh's ProxyCommand waits for it. So
this module imports next to nothing (``json`` and ``pathlib`` alone would cost more than
the interpreter's own start-up, and ``socket``'s enums a third of it: the caller's side
uses the C module under it), and the format is as plain:

    request   ``LENGTH\\n`` then LENGTH bytes: ``1\\0CWD\\0COMMAND\\0ARG\\0ARG...`` (the
              version, the caller's directory, the command the agent is to run when not
              the command line's own (``forward`` hands connections over as ``pipe``; ``stop``
              ends the agent), then the command line; no field can hold a NUL)
    answer    ``status N\\n`` or ``fallback\\n``
"""

import _socket
import os
import sys

AGENT_ENV = "HOMELAB_P2P_AGENT"
"""``off`` in the environment: never use or start an agent (as ``--no-agent`` does)."""
SOCKET_ENV = "HOMELAB_P2P_AGENT_SOCKET"
"""Another path for the agent's socket than the default (``socket_path``)."""
HANDED_OVER = ("pipe", "fetch")
"""The commands the launcher hands to a running agent whole (``forward`` hands it each
connection it accepts)."""
VERSION = "1"
MAX_REQUEST_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 64
STDIO = (0, 1, 2)
FALLBACK = b"fallback\n"


class AgentWireError(Exception):
    """The agent or its caller broke the exchange; str() says how."""


def socket_path() -> str:
    """``$HOMELAB_P2P_AGENT_SOCKET``, else ``agent.sock`` in ``$XDG_RUNTIME_DIR/homelab-p2p``
    (``/tmp/homelab-p2p-UID`` without a runtime directory)."""
    chosen = os.environ.get(SOCKET_ENV)
    if chosen:
        return chosen
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    directory = (
        os.path.join(runtime, "homelab-p2p") if runtime else f"/tmp/homelab-p2p-{os.getuid()}"  # noqa: S108
    )
    return os.path.join(directory, "agent.sock")


def prepare_directory(path: str) -> None:
    """The socket's directory, created 0700; AgentWireError when someone else could reach
    into it (a shared /tmp where another user made it first)."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
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


def connect(path: str) -> _socket.socket | None:
    """A connection to the agent listening at ``path``; None when none listens there."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def encode_request(argv: list[str], command: str = "") -> bytes:
    """AgentWireError for a field with a NUL (it cannot come from a real command line)."""
    fields = [VERSION, os.getcwd(), command, *argv]
    if any("\0" in field for field in fields):
        raise AgentWireError("a command line argument holds a NUL character")
    payload = "\0".join(fields).encode("utf-8", "surrogateescape")
    return b"%d\n" % len(payload) + payload


def decode_request(payload: bytes) -> tuple[str, str, list[str]]:
    """(directory, command, argv) of a request's payload; AgentWireError if it is not one."""
    version, *rest = payload.decode("utf-8", "surrogateescape").split("\0")
    if version != VERSION or len(rest) < 2:
        raise AgentWireError("the request is not one of this version's")
    cwd, command, *argv = rest
    return cwd, command, argv


def send_request(sock: _socket.socket, request: bytes, fds: tuple[int, ...] = STDIO) -> None:
    """``request`` with ``fds`` attached to its first bytes (``socket.send_fds``, by hand)."""
    rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)] if fds else []
    sent = sock.sendmsg([request], ancillary)
    if sent < len(request):
        sock.sendall(request[sent:])


def encode_answer(status: int | None) -> bytes:
    return FALLBACK if status is None else b"status %d\n" % status


def read_answer(sock: _socket.socket) -> int | None:
    """The exit status the agent answered, None for "fallback"; AgentWireError when it
    ended without an answer or answered nonsense."""
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = sock.recv(MAX_ANSWER_BYTES)
        if not chunk:
            raise AgentWireError("the agent ended before the command did")
        answer += chunk
        if len(answer) > MAX_ANSWER_BYTES:
            raise AgentWireError("the agent's answer is too long")
    return parse_answer(answer)


def parse_answer(answer: bytes) -> int | None:
    if answer == FALLBACK:
        return None
    word, _, number = answer.strip().partition(b" ")
    if word != b"status" or not number.isdigit():
        raise AgentWireError(f"the agent answered {answer[:40]!r}, not an exit status")
    return int(number)
