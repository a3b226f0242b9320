"""The project's own web app for the browser proxy: what a homelab dashboard asks of a browser.

Pages with a stylesheet (relative URL), a script and an image (absolute URLs), a login form
that sets a cookie and redirects across paths, an upload that reports its digest, a large
download with ``Range``, a 404 and a 500, an EventSource stream and a WebSocket echo. What
it received is kept in ``ProxyApp.received``, for the tests to assert on.
"""

import asyncio
import contextlib
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from lab.netns import Namespace
from lab.websites import serving

DOWNLOAD = random.Random(2).randbytes(50 * 1024 * 1024)
RANGE = re.compile(r"bytes=(\d+)-(\d*)")

HOME = """<!doctype html>
<html><head><meta charset="utf-8"><title>{name}</title>
<link rel="stylesheet" href="static/app.css"></head>
<body><h1>{name}</h1>
<p id="user">signed in as {user}</p>
<p id="script">the script did not run</p>
<img id="dot" src="/static/dot.svg" alt="dot">
<a id="login-link" href="/login">sign in</a>
<script src="/static/app.js"></script>
</body></html>"""

LOGIN = """<!doctype html>
<html><head><meta charset="utf-8"><title>sign in</title></head>
<body><form id="login" method="post" action="/login">
<input id="name" name="name"><button id="submit" type="submit">sign in</button>
</form></body></html>"""

SCRIPT = """document.getElementById('script').textContent = 'the script ran';
fetch('/api/whoami').then((r) => r.json()).then((who) => {
  document.body.dataset.whoami = who.user || 'nobody';
});"""

STYLE = "body { background-color: rgb(230, 240, 255); font-family: sans-serif; }"
DOT = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="7" height="5">'
    '<rect width="7" height="5" fill="red"/></svg>'
)


@dataclass
class ProxyApp:
    name: str
    received: list[str] = field(default_factory=list)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/", self.home)
        app.router.add_get("/static/app.css", self.static(STYLE, "text/css"))
        app.router.add_get("/static/app.js", self.static(SCRIPT, "text/javascript"))
        app.router.add_get("/static/dot.svg", self.static(DOT, "image/svg+xml"))
        app.router.add_get("/login", self.static(LOGIN, "text/html"))
        app.router.add_post("/login", self.login)
        app.router.add_get("/api/whoami", self.whoami)
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/download", self.download)
        app.router.add_get("/boom", self.boom)
        app.router.add_get("/events", self.events)
        app.router.add_get("/ws", self.websocket)
        return app

    @staticmethod
    def static(text: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(_: web.Request) -> web.Response:
            return web.Response(text=text, content_type=content_type)

        return serve

    async def home(self, request: web.Request) -> web.Response:
        user = request.cookies.get("session", "nobody")
        page = HOME.format(name=self.name, user=user)
        return web.Response(text=page, content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name", ""))
        self.received.append(f"login {name}")
        signed_in = web.HTTPSeeOther("/")
        signed_in.set_cookie("session", name, path="/", httponly=True)
        raise signed_in

    async def whoami(self, request: web.Request) -> web.Response:
        return web.json_response({"user": request.cookies.get("session")})

    async def upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(f"upload {len(body)}")
        return web.json_response({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def download(self, request: web.Request) -> web.Response:
        wanted = RANGE.fullmatch(request.headers.get("Range", ""))
        if wanted is None:
            return web.Response(body=DOWNLOAD, content_type="application/octet-stream")
        first = int(wanted[1])
        last = int(wanted[2]) if wanted[2] else len(DOWNLOAD) - 1
        return web.Response(
            status=206,
            body=DOWNLOAD[first : last + 1],
            content_type="application/octet-stream",
            headers={"Content-Range": f"bytes {first}-{last}/{len(DOWNLOAD)}"},
        )

    async def boom(self, _: web.Request) -> web.Response:
        return web.Response(status=500, text="boom: the app failed")

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Three events, a tick apart, then keep-alive comments until the client leaves (as
        event-stream servers do: a write is how a server learns that its client is gone)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for tick in range(3):
            await response.write(f"data: {json.dumps({'tick': tick})}\n\n".encode())
            await asyncio.sleep(0.1)
        try:
            while True:
                await response.write(b": keep-alive\n\n")
                await asyncio.sleep(0.2)
        except ConnectionError:
            self.received.append("events ended")
        return response

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
        await socket.prepare(request)
        async for message in socket:
            if message.type is WSMsgType.TEXT:
                self.received.append(f"ws text {message.data}")
                await socket.send_str(message.data)
            elif message.type is WSMsgType.BINARY:
                self.received.append(f"ws binary {len(message.data)}")
                await socket.send_bytes(message.data)
        return socket


@contextlib.asynccontextmanager
async def proxy_app(namespace: Namespace, port: int, name: str) -> AsyncIterator[ProxyApp]:
    """``ProxyApp`` called ``name``, listening on 127.0.0.1:``port`` in ``namespace``."""
    served = ProxyApp(name)
    async with serving(served.application(), namespace, port):
        yield served


@contextlib.asynccontextmanager
async def idle_event_stream(namespace: Namespace, port: int) -> AsyncIterator[list[str]]:
    """An event-stream server that sends one event, then nothing: it learns that its client
    left only from its connection closing (no keep-alive writes). Yields what it saw."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"GET /stream "):  # any other path: a page to open it from
            page = b"<!doctype html><title>feed</title><p>the feed"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(page), page)
            )
            await writer.drain()
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\n\r\ndata: only\n\n"
        )
        await writer.drain()
        seen.append("streaming")
        await reader.read()  # b"" once the connection closes
        seen.append("connection closed")
        writer.close()

    server = await asyncio.start_server(serve, sock=namespace.socket_listening("127.0.0.1", port))
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()
