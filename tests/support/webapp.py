"""A small web application in a lab namespace: what a homelab's http:// service serves."""

import contextlib
import gzip
import random
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web

from lab.netns import Namespace
from lab.websites import serving

BIG = random.Random(1).randbytes(1024 * 1024)
HOME_PAGE = "<!doctype html><title>homelab</title><h1>Hello from the homelab</h1>"
TEXT = ("all work and no play " * 2000).encode()


@contextlib.asynccontextmanager
async def web_app(namespace: Namespace, port: int) -> AsyncIterator[None]:
    async def big(_: web.Request) -> web.Response:
        return web.Response(body=BIG, content_type="application/octet-stream")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            body=body, headers={"X-Method": request.method, "X-Length": str(len(body))}
        )

    async def compressed(_: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(TEXT), headers={"Content-Encoding": "gzip"})

    async def home(_: web.Request) -> web.Response:
        return web.Response(text=HOME_PAGE, content_type="text/html")

    async def websocket_echo(request: web.Request) -> web.WebSocketResponse:
        """Each message back as it came; ``"close 4001"`` makes it close with that code."""
        socket = web.WebSocketResponse(protocols=("echo",), max_msg_size=4 * 1024 * 1024)
        await socket.prepare(request)
        async for message in socket:
            if message.type is WSMsgType.TEXT and message.data.startswith("close "):
                await socket.close(code=int(message.data.split()[1]), message=b"asked to")
            elif message.type is WSMsgType.TEXT:
                await socket.send_str(message.data)
            elif message.type is WSMsgType.BINARY:
                await socket.send_bytes(message.data)
        return socket

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/", home)
    app.router.add_get("/big", big)
    app.router.add_post("/echo", echo)
    app.router.add_get("/text", compressed)
    app.router.add_get("/ws", websocket_echo)
    async with serving(app, namespace, port):
        yield
