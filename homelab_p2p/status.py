"""``homelab-p2p status``: what the daemon on this host is doing, read from its status socket.

The daemon writes one JSON document to each reader of ``status_socket`` (homelab_server/
status.py); this prints it for a person, or as it came with ``--json``.
"""

import argparse
import json
import socket
from pathlib import Path
from typing import Any

from homelab_p2p.output import fail

DEFAULT_SOCKET = Path("/run/homelab-p2p-bridge/status.sock")
"""Where the homelab_server role has the daemon listen (status_socket in config.yml)."""
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024
"""A snapshot of max_peers (at most 1000) peers is well under this."""
TIMEOUT = 5.0
KNOWN_SCHEMA = 1


class StatusUnavailable(Exception):
    """The daemon cannot be read; str() says why and what to do."""


def read_snapshot(path: Path) -> dict[str, Any]:
    """The daemon's snapshot, or StatusUnavailable naming what to do."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(TIMEOUT)
            connection.connect(str(path))
            data = _read_all(connection)
    except FileNotFoundError:
        raise StatusUnavailable(
            f"no daemon answers at {path}: is homelab-p2p-bridge running "
            "(systemctl status homelab-p2p-bridge), and is status_socket set in its config.yml?"
        ) from None
    except PermissionError:
        raise StatusUnavailable(
            f"you may not read {path}: run this as root or as a member of the daemon's group"
        ) from None
    except ConnectionRefusedError:
        raise StatusUnavailable(
            f"nothing listens on {path}: the daemon stopped; "
            "systemctl status homelab-p2p-bridge says why"
        ) from None
    except TimeoutError:
        raise StatusUnavailable(
            f"the daemon did not answer on {path} within {TIMEOUT:g} s: it may be hung; "
            "systemctl status homelab-p2p-bridge"
        ) from None
    except OSError as exc:
        raise StatusUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        snapshot = json.loads(data)
    except ValueError:
        raise StatusUnavailable(
            f"{path} did not answer with a status: is it the daemon's?"
        ) from None
    if not isinstance(snapshot, dict) or snapshot.get("schema") != KNOWN_SCHEMA:
        raise StatusUnavailable(
            f"{path} answered with a status this homelab-p2p does not know; "
            "install the same version as the daemon"
        )
    return snapshot


def _read_all(connection: socket.socket) -> bytes:
    pieces, size = [], 0
    while piece := connection.recv(65536):
        size += len(piece)
        if size > MAX_SNAPSHOT_BYTES:
            raise StatusUnavailable(f"the status is larger than {MAX_SNAPSHOT_BYTES} bytes")
        pieces.append(piece)
    return b"".join(pieces)


def duration(seconds: float | None) -> str:
    """3d 04h, 2h 03m, 5m 02s, 42s."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def size(count: int) -> str:
    """Bytes in B, kB, MB or GB (powers of 1000, as ip and ss print them)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def render(snapshot: dict[str, Any]) -> str:
    """The snapshot for a person: the registration, then a line per peer."""
    signaling = snapshot["signaling"]
    if signaling["registered"]:
        registration = (
            f"registered at {signaling['url']} for {duration(signaling['registered_seconds'])} "
            f"(connection {signaling['connection_id']})"
        )
    else:
        problem = signaling.get("last_problem") or "connecting"
        registration = f"NOT registered at {signaling['url']}: {problem}"
    refused = snapshot.get("offers_refused") or {}
    refused_text = (
        ", ".join(f"{count} {code}" for code, count in sorted(refused.items()))
        if refused
        else "none"
    )
    lines = [
        f"{snapshot['name']}: {registration}",
        f"up {duration(snapshot['uptime_seconds'])} (pid {snapshot['pid']}); "
        f"services: {', '.join(snapshot['services']) or 'none'}",
        f"peers: {len(snapshot['peers'])} of {snapshot['max_peers']}; "
        f"offers refused since start: {refused_text}",
    ]
    peers = snapshot["peers"]
    if peers:
        rows = [("CLIENT", "CREDENTIAL", "PAIR", "AGE", "CHANNELS", "IN", "OUT", "RTT")]
        for peer in peers:
            rtt = peer.get("round_trip_ms")
            rows.append(
                (
                    str(peer["client"]),
                    str(peer["credential"]),
                    peer["pair"] or peer["state"],
                    duration(peer["age_seconds"]),
                    str(peer["channels"]),
                    size(peer["bytes_received"]),
                    size(peer["bytes_sent"]),
                    "-" if rtt is None else f"{rtt:.1f} ms",
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines += [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
    return "\n".join(lines)


def add_status_parser(subcommands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subcommands.add_parser(
        "status",
        help="what the homelab daemon on this host is doing (registration, peers, refusals)",
        description="Read the running homelab_server's state from its status socket: "
        "registration, uptime, each peer with its pair type, age, channels, bytes and round "
        "trip, and the offers refused since it started. Exit status 1 when the daemon is not "
        "registered, 2 when it cannot be read.",
    )
    parser.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_SOCKET,
        help="the daemon's status_socket (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the daemon's JSON as it is")
    parser.set_defaults(run=status)


def status(args: argparse.Namespace) -> int:
    try:
        snapshot = read_snapshot(args.socket)
    except StatusUnavailable as exc:
        return fail(str(exc), 2)
    print(json.dumps(snapshot, indent=2) if args.json else render(snapshot))
    return 0 if snapshot["signaling"]["registered"] else 1
