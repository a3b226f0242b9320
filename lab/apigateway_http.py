"""A stand-in for an API Gateway HTTP API in front of the signaling function's pages.

AWS cannot run here. This serves what an HTTP API does for ``signaling_lambda/pages.py``:
each request becomes a payload 2.0 event (``requestContext.domainName`` is the Host the
browser used, ``http.method``, ``rawPath``), and the function's answer (status, headers, a
base64 body) becomes the response.
"""

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from lab.netns import Namespace
from lab.websites import serving
from signaling_lambda import pages


def payload_v2_event(request: web.Request) -> dict[str, object]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.query_string,
        "headers": {key.lower(): value for key, value in request.headers.items()},
        "requestContext": {
            "domainName": request.host,
            "http": {"method": request.method, "path": request.path},
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def pages_app(environment: Mapping[str, str]) -> web.Application:
    async def invoke(request: web.Request) -> web.Response:
        event = payload_v2_event(request)
        assert pages.is_http_request(event)
        answer = await asyncio.to_thread(pages.respond, event, environment)  # reads files
        return web.Response(
            status=answer["statusCode"],
            headers=answer["headers"],
            body=base64.b64decode(answer["body"]),
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", invoke)
    return app


@contextlib.asynccontextmanager
async def pages_apis(
    namespace: Namespace, host: str, ports: tuple[int, int], signaling_url: str
) -> AsyncIterator[tuple[str, str]]:
    """The console's and the apps' "HTTP APIs" on ``host``:``ports``; yields both origins."""
    console, apps = (f"http://{host}:{port}" for port in ports)
    environment = {
        "PAGES_CONSOLE_ORIGIN": console,
        "PAGES_APPS_ORIGIN": apps,
        "PAGES_SIGNALING_URL": signaling_url,
    }
    async with (
        serving(pages_app(environment), namespace, ports[0], host),
        serving(pages_app(environment), namespace, ports[1], host),
    ):
        yield console, apps
