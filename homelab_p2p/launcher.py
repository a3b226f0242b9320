"""The ``homelab-p2p`` program: through a running client agent when there is one, else the CLI.

``ssh -o ProxyCommand='homelab-p2p pipe ssh'`` starts this for every connection. With an
agent running, the command is handed to it with this process's stdio and this process waits
for the exit status: no aiortc import, no negotiation, only Python's own start-up. Everything
else (and the first use, which starts the agent) goes to ``homelab_p2p.cli``.
"""

import sys

from homelab_p2p import agentwire


def through_running_agent(argv: list[str]) -> int | None:
    """The command's exit status when a running agent served it; None otherwise."""
    if not argv or argv[0] not in agentwire.HANDED_OVER or not agentwire.agent_allowed(argv):
        return None
    sock = agentwire.connect(agentwire.socket_path())
    if sock is None:
        return None
    try:
        agentwire.send_request(sock, agentwire.encode_request(argv))
        return agentwire.read_answer(sock)
    except KeyboardInterrupt:
        return 130  # the agent sees this process go and stops the command
    except (OSError, agentwire.AgentWireError) as exc:
        # Any bytes of stdin it read are gone with it: running the command here instead
        # could send a half. Say so; the next call starts a new agent.
        print(f"homelab-p2p: the client agent failed: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()


def main() -> None:
    argv = sys.argv[1:]
    status = through_running_agent(argv)
    if status is None:
        from homelab_p2p.cli import main as cli_main  # noqa: PLC0415 (the slow import, only here)

        status = cli_main(argv)
    sys.exit(status)


if __name__ == "__main__":
    main()
