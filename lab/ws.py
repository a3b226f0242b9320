"""Small WebSocket client helpers for talking JSON to a gateway."""

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

REPLY_TIMEOUT = 10.0


async def open_ws(url: str, token: str | None = None) -> ClientConnection:
    target = f"{url}?token={token}" if token else url
    return await connect(target, open_timeout=10, ping_interval=None, compression=None)


async def send_json(ws: ClientConnection, message: Any) -> None:
    await ws.send(json.dumps(message))


async def recv_json(ws: ClientConnection, within: float = REPLY_TIMEOUT) -> Any:
    async with asyncio.timeout(within):
        return json.loads(await ws.recv())


async def request(ws: ClientConnection, message: Any, within: float = REPLY_TIMEOUT) -> Any:
    await send_json(ws, message)
    return await recv_json(ws, within)


async def identify(ws: ClientConnection) -> str:
    """The connection id the gateway gave ``ws``."""
    reply = await request(ws, {"action": "sendSignal", "to": "me", "data": "identify"})
    assert reply["action"] == "connected", reply
    return str(reply["data"])
