"""``homelab_server`` as it was before WebSockets (framing version 1), for compatibility tests.

    python -m lab.framing_v1_daemon --config FILE

Version 2 differs from version 1 at two points only, and this puts version 1 back at both:
the request head's ``upgrade`` is ignored (version 1 read method, path and headers, so a
WebSocket request became a plain GET), and response heads carry no ``"v"``. Everything else
is the daemon as it is. (A checkout of an older commit would be the real thing, but a
clean clone may be shallow.)
"""

import json
import sys

from homelab_server import services
from homelab_server.daemon import main
from p2p_protocol import httpframing


def parse_request_head_v1(text: str) -> httpframing.RequestHead:
    try:
        head = json.loads(text)
    except (ValueError, RecursionError):
        head = None  # parse_request_head says what is wrong, as version 1 did
    if isinstance(head, dict):
        head.pop("upgrade", None)
        head.pop("v", None)
        text = json.dumps(head)
    return httpframing.parse_request_head(text)


def response_head_v1(status: int, status_text: str, headers: list[tuple[str, str]]) -> str:
    return json.dumps(
        {"status": status, "statusText": status_text, "headers": [list(h) for h in headers]}
    )


if __name__ == "__main__":
    services.parse_request_head = parse_request_head_v1  # type: ignore[attr-defined]
    services.response_head = response_head_v1  # type: ignore[attr-defined]
    sys.exit(main())
