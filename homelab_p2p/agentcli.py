"""``homelab-p2p agent``: run the client agent (agent.py), or stop the one running."""

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TypeAlias

from homelab_p2p import agentwire
from homelab_p2p.clientconfig import DEFAULT_AGENT_IDLE_TIMEOUT
from p2p_runtime.logs import configure_logging

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_agent_parser(subcommands: Subcommands) -> None:
    agent = subcommands.add_parser(
        "agent",
        help="keep warm connections for pipe, fetch and forward (started by them on first use)",
        description="Serve pipe, fetch and forward over a Unix socket with one warm connection "
        "per homelab, as ssh's ControlMaster does. They start it themselves on first use; run "
        "it yourself as a user service with --idle-timeout 0. See docs/client.md.",
    )
    agent.add_argument(
        "--socket",
        type=Path,
        help=f"where to listen (default: {agentwire.socket_path()}, or ${agentwire.SOCKET_ENV})",
    )
    agent.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_AGENT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"end after this long without a command; 0: never (default: "
        f"{DEFAULT_AGENT_IDLE_TIMEOUT:g})",
    )
    agent.add_argument("--log-file", type=Path, help="log here instead of stderr")
    agent.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    agent.add_argument("--stop", action="store_true", help="stop the agent running there")
    agent.add_argument("-v", "--verbose", action="count", default=1, help="-v for detail")
    agent.set_defaults(run=_agent)


def _agent(args: argparse.Namespace) -> int:
    path = Path(args.socket or agentwire.socket_path())
    if args.stop:
        return _stop(path)
    if args.idle_timeout < 0:
        print("homelab-p2p: --idle-timeout must be 0 or more seconds", file=sys.stderr)
        return 2
    try:
        agentwire.prepare_directory(str(path))
    except agentwire.AgentWireError as exc:
        print(f"homelab-p2p: {exc}", file=sys.stderr)
        return 1
    configure_logging(("WARNING", "INFO", "DEBUG")[min(args.verbose, 2)], args.log_file)
    from homelab_p2p.agent import run_agent  # noqa: PLC0415 (aiortc: only for the agent)
    from homelab_p2p.cli import build_parser  # noqa: PLC0415 (cli imports this module)

    def ready(word: str) -> None:
        if args.ready_fd is not None:
            os.write(args.ready_fd, f"{word}\n".encode())
            os.close(args.ready_fd)

    return asyncio.run(run_agent(path, args.idle_timeout, build_parser(), ready))


def _stop(path: Path) -> int:
    sock = agentwire.connect(str(path))
    if sock is None:
        print(f"No agent runs at {path}")
        return 0
    try:
        agentwire.send_request(sock, agentwire.encode_request([], command="stop"), fds=())
        agentwire.read_answer(sock)
    except (OSError, agentwire.AgentWireError) as exc:
        print(f"homelab-p2p: the agent at {path} did not stop: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    print(f"Stopped the agent at {path}")
    return 0
