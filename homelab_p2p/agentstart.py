"""Starting the client agent on first use: in the background, in a session of its own, with
its log next to its socket, and waited for until it listens."""

import logging
import os
import select
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("homelab_p2p.agent")

START_TIMEOUT = 10.0
"""Seconds the agent may take to listen; the command runs without it after that."""


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
        subprocess.Popen(  # noqa: S603 (our own program, no shell)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(ready_write,),
            start_new_session=True,  # not ended by the terminal's Ctrl-C or hang-up
        )
    except OSError as exc:
        return f"it could not be started: {exc.strerror or exc}"
    finally:
        os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready:
        readable, _, _ = select.select([ready], [], [], START_TIMEOUT)
        said = ready.readline().strip() if readable else b""
    if said in (b"ready", b"running"):
        return None
    if not readable:
        return f"it did not listen within {START_TIMEOUT:g} s (its log: {log_file(path)})"
    return f"it ended at once (its log: {log_file(path)})"
