"""Starting the client agent on first use: in the background, in a session of its own, not
the command's child, with its log next to its socket, and waited for until it listens."""

import logging
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("homelab_p2p.agent")

START_TIMEOUT = 10.0
"""Seconds the agent may take to listen; the command runs without it after that."""
CANNOT_START = b"cannot start: "
"""What the starting child writes on the ready pipe when the agent could not be started."""


def log_file(path: Path) -> Path:
    return path.parent / "agent.log"


def start_agent(path: Path, idle_timeout: float) -> str | None:
    """Starts ``homelab-p2p agent`` for ``path``; None once one listens there, else why not."""
    ready_read, ready_write = os.pipe()
    argv = [
        sys.executable,
        "-m",
        "homelab_p2p.launcher",
        "agent",
        "--socket",
        str(path),
        "--idle-timeout",
        f"{idle_timeout:g}",
        "--log-file",
        str(log_file(path)),
        "--ready-fd",
        str(ready_write),
    ]
    try:
        starter = os.fork()  # before any thread or event loop: the CLI calls this first
    except OSError as exc:
        os.close(ready_read)
        os.close(ready_write)
        return f"it could not be started: {exc.strerror or exc}"
    if starter == 0:
        os.close(ready_read)
        _start_and_leave(argv, ready_write)
    os.close(ready_write)
    os.waitpid(starter, 0)
    with os.fdopen(ready_read, "rb") as ready:
        readable, _, _ = select.select([ready], [], [], START_TIMEOUT)
        said = ready.readline().strip() if readable else b""
    if said in (b"ready", b"running"):
        return None
    if said.startswith(CANNOT_START):
        reason = said.removeprefix(CANNOT_START).decode(errors="replace")
        return f"it could not be started: {reason}"
    if not readable:
        return f"it did not listen within {START_TIMEOUT:g} s (its log: {log_file(path)})"
    return f"it ended at once (its log: {log_file(path)})"


def _start_and_leave(argv: list[str], ready_write: int) -> NoReturn:
    """In a child of the command: start the agent and exit at once. The agent is then
    adopted by init (or the nearest subreaper), not left a child of the command: a
    long-running ``forward`` would otherwise keep it as a zombie once it ended."""
    status = 1
    try:
        subprocess.Popen(  # noqa: S603 (our own program, no shell)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(ready_write,),
            start_new_session=True,  # not ended by the terminal's Ctrl-C or hang-up
        )
        status = 0
    except OSError as exc:
        os.write(ready_write, CANNOT_START + str(exc.strerror or exc).encode() + b"\n")
    finally:
        # Whatever happened, this copy of the command ends here: nothing of it (the rest of
        # the command, atexit, buffered output) runs twice.
        os._exit(status)
