"""A compromised signaling service, as a client sees it: every frame between the client and
the real gateway passes through ``tamper``, which may change it, drop it or answer itself.

The client connects to ``url`` (in its own namespace); each of its connections gets one
upstream connection to the gateway, with the same path and token.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from lab.netns import Namespace

TO_HOMELAB = "to the homelab"
TO_CLIENT = "to the client"


class Relay:
    """One client connection and its upstream: what ``tamper`` may send on either."""

    def __init__(self, client: ServerConnection, upstream: ClientConnection) -> None:
        self.client = client
        self.upstream = upstream

    async def to_client(self, message: dict[str, Any]) -> None:
        await self.client.send(json.dumps(message))


Tamper = Callable[[str, dict[str, Any], Relay], Awaitable[dict[str, Any] | None]]


class TamperingSignaling:
    def __init__(self, namespace: Namespace, gateway: tuple[str, int], tamper: Tamper) -> None:
        self.namespace = namespace
        self.gateway = gateway
        self.tamper = tamper
        self.url = ""
        self.errors: list[str] = []
        self._server: Server | None = None

    async def __aenter__(self) -> Self:
        listening = self.namespace.socket_listening("127.0.0.1", 0)
        port = listening.getsockname()[1]
        self._server = await serve(self._relay, sock=listening, ping_interval=None)
        self.url = f"ws://127.0.0.1:{port}/prod"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _relay(self, client: ServerConnection) -> None:
        host, port = self.gateway
        assert client.request is not None
        sock = await asyncio.to_thread(self.namespace.socket_connected, host, port)
        async with connect(
            f"ws://{host}:{port}{client.request.path}", sock=sock, ping_interval=None
        ) as upstream:
            relay = Relay(client, upstream)
            pumps = [
                asyncio.create_task(self._pump(client, upstream, TO_HOMELAB, relay)),
                asyncio.create_task(self._pump(upstream, client, TO_CLIENT, relay)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self,
        source: ServerConnection | ClientConnection,
        sink: ServerConnection | ClientConnection,
        direction: str,
        relay: Relay,
    ) -> None:
        try:
            async for frame in source:
                message = json.loads(frame)
                changed = await self.tamper(direction, message, relay)
                if changed is not None:
                    await sink.send(json.dumps(changed))
        except ConnectionClosed:
            pass  # either side closing ends the relay
        except Exception as exc:  # a bug in the test's tamper: the test asserts there is none
            self.errors.append(f"{type(exc).__name__}: {exc}")
