"""The troubleshooting guide's error table (reference/connection-issues.md), for this system.

The first five rows are the guide's own, with its error messages; their solutions name this
project's commands. The rest are rows the guide implies but does not list (a refused token,
an unreachable STUN server, TURN credentials), worded the same way.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    error: str
    cause: str
    solution: str


TARGET_NOT_CONNECTED = Row(
    "The target (homelab_server) is not currently connected",
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
    "Internal server error",
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
