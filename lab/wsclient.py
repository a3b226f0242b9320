"""A WebSocket of a homelab's http:// service through the bridge, run in a lab namespace.

    python -m lab.wsclient SERVICE PATH [--protocol P] [--text T]... [--binary-size N]...
        [--close-code C] CONNECTION-FLAGS

It connects as ``homelab-p2p`` does (the same connection flags), opens the WebSocket,
sends each --text and then each --binary-size message (N random bytes, seeded), and reads
one message back for each; it prints one JSON line per message received (``{"text": ...}``
or ``{"binary": LENGTH, "sha256": ...}``), then closes with --close-code and prints
``{"closed": [CODE, REASON]}`` with what the far end said, or ``{"error": ...}`` when the
WebSocket was refused.
"""

import argparse
import asyncio
import hashlib
import json
import random
import sys

from homelab_p2p.client import BridgeClient
from homelab_p2p.clientconfig import add_connection_options, client_options
from homelab_p2p.httpclient import ChannelWebSocket, HttpExchangeError
from p2p_webrtc import install


def describe(message: str | bytes | tuple[int, str]) -> dict[str, object]:
    if isinstance(message, tuple):
        return {"closed": list(message)}
    if isinstance(message, str):
        return {"text": message}
    return {"binary": len(message), "sha256": hashlib.sha256(message).hexdigest()}


def say(what: dict[str, object]) -> None:
    print(json.dumps(what), flush=True)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wsclient")
    parser.add_argument("service")
    parser.add_argument("path")
    parser.add_argument("--protocol")
    parser.add_argument("--text", action="append", default=[])
    parser.add_argument("--binary-size", type=int, action="append", default=[])
    parser.add_argument("--close-code", type=int, default=1000)
    add_connection_options(parser)
    args = parser.parse_args(argv)
    options = client_options(args)
    install(options.ice, options.data_path)
    client = BridgeClient(options)
    try:
        socket = await client.open_service(args.service, ChannelWebSocket)
        headers = [("Sec-WebSocket-Protocol", args.protocol)] if args.protocol else []
        await socket.open(args.path, headers)
        say({"protocol": socket.protocol})
        seeded = random.Random(7)
        outgoing: list[str | bytes] = [*args.text]
        outgoing += [seeded.randbytes(size) for size in args.binary_size]
        for message in outgoing:
            say({"sent": describe(message)})
            await socket.send(message)
            received = await socket.receive()
            say(describe(received))
            if isinstance(received, tuple):
                return 0
        say(describe(await socket.close(args.close_code, "done")))
    except HttpExchangeError as exc:
        say({"error": str(exc)})
    finally:
        await client.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
