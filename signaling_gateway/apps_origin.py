"""The browser proxy's app origin: a second port that serves ``frontend/apps/``.

Browsers isolate pages by origin (scheme, host and port). Apps opened through the proxy
console (``proxy.html``, on the WebSocket port) run on this port instead, so nothing an app
serves can read the console's credential (docs/browser.md, "Opening a whole web app"). This
port serves only the proxy's own files: its service worker answers everything else in the
browser, through the console's peer connection. A request that reaches this server for an
app's path came before the service worker took control: it gets the bootstrap page, which
installs the worker and loads the path again.
"""

import asyncio
import logging
import re
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from signaling_gateway.static import static_response
from signaling_lambda.pages import APP_ORIGIN_FILES, APP_ORIGIN_POLICY, RELAY_PAGE, relay_policy

log = logging.getLogger("signaling_gateway")

HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|[0-9A-Fa-f:.]{2,45}")
"""A DNS name, an IPv4 or an IPv6 address (what goes into a header and a URL we write)."""


def request_hostname(request: Request) -> str | None:
    """The host name the browser used (the Host header without its port), if it is one."""
    try:
        hostname = urlsplit(f"//{request.headers.get('Host', '')}").hostname
    except ValueError:
        return None
    return hostname if hostname and HOSTNAME.fullmatch(hostname) else None


def origin(hostname: str, port: int) -> str:
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"http://{host}:{port}"


class AppsOrigin:
    """Serves ``root`` (frontend/apps) on ``host``:``port``, framed only by the console."""

    def __init__(self, root: Path, host: str, console_port: int) -> None:
        self._root = root
        self._host = host
        self._console_port = console_port
        self._server: Server | None = None
        self.port = 0

    async def start(self, port: int) -> None:
        self._server = await serve(
            self._never_upgraded,
            self._host,
            port,
            process_request=self._respond,
            server_header="signaling-gateway",
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _never_upgraded(self, _: ServerConnection) -> None:
        """Unreachable: every request gets a response from ``_respond``, upgrades included."""

    async def _respond(self, connection: ServerConnection, request: Request) -> Response:
        hostname = request_hostname(request)
        if hostname is None:
            return connection.respond(HTTPStatus.BAD_REQUEST, "The Host header is not a host.\n")
        path = urlsplit(request.path).path
        policy = APP_ORIGIN_POLICY
        if path == RELAY_PAGE:
            policy = relay_policy(origin(hostname, self._console_port))
        # The same files and policies as on AWS (signaling_lambda/pages.py).
        served = path if path in APP_ORIGIN_FILES else "/index.html"
        return await asyncio.to_thread(
            static_response, self._root, served, [("Content-Security-Policy", policy)]
        )
