"""Tell systemd how the service is doing (``systemctl status`` shows it), if systemd listens.

The sd_notify protocol is one datagram to the socket in ``$NOTIFY_SOCKET``; outside systemd
the variable is unset and this does nothing.
"""

import os
import socket


def notify(**fields: str) -> None:
    """``notify(STATUS="Registered as 'laptop'")``; errors are ignored (status is advisory)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, address)
    except OSError:
        pass
