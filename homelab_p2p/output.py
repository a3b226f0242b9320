"""How the client tells a person what went wrong: one line on stderr, and an exit status."""

import sys


def fail(message: str, status: int = 1) -> int:
    """Print ``homelab-p2p: MESSAGE`` on stderr; return ``status`` for the command to exit with."""
    print(f"homelab-p2p: {message}", file=sys.stderr)
    return status
