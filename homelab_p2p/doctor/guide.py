"""The troubleshooting guide's error table (reference/connection-issues.md), for this system.

The first five rows are the guide's own, with its error messages; their solutions name this
project's commands. The rest are rows the guide implies but does not list (a refused token,
an unreachable STUN server, TURN credentials), worded the same way.
"""

import re
from dataclasses import asdict, dataclass

from p2p_protocol.messages import BACKEND_UNREACHABLE_MESSAGE, INTERNAL_ERROR_MESSAGE


@dataclass(frozen=True)
class Row:
    error: str
    cause: str
    solution: str


TARGET_NOT_CONNECTED = Row(
    BACKEND_UNREACHABLE_MESSAGE,
    "Homelab server not running or not connected",
    "Start homelab_server and verify it connects to signaling: systemctl status "
    "homelab-p2p-bridge; journalctl -u homelab-p2p-bridge shows 'Registered as ...'",
)
WEBSOCKET_FAILED = Row(
    "WebSocket connection failed",
    "Invalid URL or network issue",
    "Verify the WebSocket URL (wss://<api-id>.execute-api.<region>.amazonaws.com/prod, or "
    "ws://HOST:8765/prod for a local gateway) and the network connectivity; re-deploy "
    "signaling if needed (ansible-playbook site.yml)",
)
WEBRTC_TIMEOUT = Row(
    "WebRTC connection timeout",
    "NAT traversal or firewall issue",
    "Check STUN/TURN servers, configure a TURN server behind restrictive NAT, and let the "
    "homelab's ice_port_range through its firewall (the webrtc_firewall role)",
)
INTERNAL_ERROR = Row(
    INTERNAL_ERROR_MESSAGE,
    "Signaling function error (older version)",
    "Update the signaling code: ansible-playbook playbooks/update-lambda.yml (AWS), or "
    "ansible-playbook site.yml --tags signaling (local gateway)",
)
UNKNOWN_FORMAT = Row(
    "Unknown message format",
    "Old signaling version",
    "Update the signaling code and re-deploy: ansible-playbook playbooks/update-lambda.yml",
)
TOKEN_REFUSED = Row(
    "HTTP 401/403 at the WebSocket handshake",
    "The token is missing, expired, forged, or signed with another secret",
    "Issue a new client token with the signaling secret: homelab-p2p token issue --role "
    "client --name NAME --secret-file credentials/<host>/signaling-secret",
)
STUN_UNREACHABLE = Row(
    "STUN server did not answer",
    "The STUN server is down or UDP to it is blocked",
    "Try different STUN servers in the configuration, or allow outbound UDP to them",
)
SYMMETRIC_NAT = Row(
    "WebRTC connection timeout",
    "Symmetric NAT: the public mapping changes per destination, so direct paths fail",
    "Configure a TURN server on both ends (the turn_server role; --ice-server turn:...)",
)
TURN_FAILED = Row(
    "TURN allocation failed",
    "Wrong TURN credentials, or the TURN server is unreachable",
    "Check the TURN URL, username and credential (--ice-username/--ice-credential, or "
    "ice_servers in the config)",
)


BUG = Row(
    "Traceback",
    "A bug in homelab-p2p-bridge (bad input never causes a traceback)",
    "Report it with the log lines around the traceback; restarting the service usually recovers",
)
SERVICE_DOWN = Row(
    BACKEND_UNREACHABLE_MESSAGE,
    "homelab-p2p-bridge.service is not running",
    "systemctl start homelab-p2p-bridge, then journalctl -u homelab-p2p-bridge says why it stopped",
)
BAD_CONFIG = Row(
    "homelab_server: <config>: <key>: ...",
    "The daemon's configuration is not usable (it exits with status 2)",
    "Fix the key named (docs/configuration.md) or re-run ansible-playbook site.yml",
)

ROWS: dict[str, Row] = {
    "target_not_connected": TARGET_NOT_CONNECTED,
    "websocket_failed": WEBSOCKET_FAILED,
    "webrtc_timeout": WEBRTC_TIMEOUT,
    "internal_error": INTERNAL_ERROR,
    "unknown_format": UNKNOWN_FORMAT,
    "token_refused": TOKEN_REFUSED,
    "stun_unreachable": STUN_UNREACHABLE,
    "symmetric_nat": SYMMETRIC_NAT,
    "turn_failed": TURN_FAILED,
    "bug": BUG,
    "service_down": SERVICE_DOWN,
    "bad_config": BAD_CONFIG,
}

# Log lines (the daemon's, the gateway's, the Lambda's) that point at a row.
PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"LAPTOP_ID connection is stale \(homelab_server not connected\)"),
        "target_not_connected",
    ),
    (re.compile(r"does not exist \(homelab_server not connected\)"), "target_not_connected"),
    (re.compile(r"WebSocket connection failed"), "websocket_failed"),
    (re.compile(r"refused the token \(HTTP 40[13]\)"), "token_refused"),
    (re.compile(r"WebRTC connection timeout|no network path"), "webrtc_timeout"),
    (re.compile(f"{re.escape(INTERNAL_ERROR_MESSAGE)}|Configuration error"), "internal_error"),
    (re.compile(r"Traceback \(most recent call last\)"), "bug"),
]


@dataclass(frozen=True)
class Finding:
    finding: str
    row: str

    def as_dict(self) -> dict[str, str]:
        return {"finding": self.finding, "row": self.row, **asdict(ROWS[self.row])}


def match_lines(lines: list[str]) -> list[Finding]:
    """One finding per row the lines point at: its newest line, and how many lines did."""
    last: dict[str, str] = {}
    counts: dict[str, int] = {}
    for line in lines:
        for pattern, row in PATTERNS:
            if pattern.search(line):
                last[row] = line.strip()
                counts[row] = counts.get(row, 0) + 1
                break
    return [
        Finding(f"{line[:300]}" + (f" ({counts[row]} such lines)" if counts[row] > 1 else ""), row)
        for row, line in last.items()
    ]
