"""``homelab-p2p echo``: the troubleshooting guide's manual WebSocket test, automated.

Connects with the token, sends ``{"action":"sendSignal","to":"me","data":...}`` and waits
for the same message back, then asks for its connection id (``identify``). It needs no
homelab, so it tells "signaling works" apart from everything after it. ``update-lambda.yml``
runs it as the smoke test after new code is live.
"""

import secrets
import time
from typing import Any

from homelab_p2p.client import ClientOptions
from homelab_p2p.output import fail
from signaling_client.link import Link, SignalingError, SignalingUnreachable

UNREACHABLE = 3
"""Exit status when the service could not be reached at all (as opposed to answering wrong)."""


async def _ignore(*_: Any) -> None:
    return None


async def echo_to_me(link: Link, within: float) -> tuple[float, str]:
    """Seconds for a message to `me` to come back, and the connection id `identify` gives.

    SignalingError says why when either does not come back.
    """
    nonce = f"echo-{secrets.token_hex(4)}"
    sent = time.monotonic()
    await link.request(
        {"action": "sendSignal", "to": "me", "data": nonce},
        lambda m: m.get("action") == "sendSignal" and m.get("data") == nonce,
        within=within,
    )
    round_trip = time.monotonic() - sent
    identity = await link.request(
        {"action": "sendSignal", "to": "me", "data": "identify"},
        lambda m: m.get("action") == "connected",
        within=within,
    )
    return round_trip, str(identity.get("data"))


async def echo(options: ClientOptions) -> int:
    started = time.monotonic()
    try:
        link = await Link.open(options.signaling_url, options.token, _ignore, _ignore)
    except SignalingUnreachable as exc:
        return fail(str(exc), status=UNREACHABLE)
    except SignalingError as exc:
        return fail(str(exc))
    connected = time.monotonic() - started
    try:
        round_trip, connection_id = await echo_to_me(link, options.timeout)
    except SignalingError as exc:
        return fail(f"the echo through {options.signaling_url} failed: {exc}")
    finally:
        await link.close()
    print(
        f"Echo from {options.signaling_url}: connected in {connected * 1000:.0f} ms, "
        f"round trip {round_trip * 1000:.0f} ms, connection id {connection_id}"
    )
    return 0
