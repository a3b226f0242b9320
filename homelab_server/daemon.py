"""``homelab_server``: the bridge daemon (issue 3 builds it; this is its entry point)."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="homelab_server",
        description="Bridge WebRTC data channels from clients to the homelab's local services.",
    )
    parser.add_argument("--config", required=True, help="path to config.yml")
    parser.parse_args(argv)
    print("homelab_server: the bridge daemon is not part of this release yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
