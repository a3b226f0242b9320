"""``GET /metrics`` for Prometheus, served from the event loop (the daemon's and the gateway's).

Off unless an address is configured; the roles put it on loopback. Each scrape is rendered
in one step of the loop, so scrapes never run at once and never see a half-updated state.
"""

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger("p2p_runtime")


class MetricsEndpoint:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        shown = f"[{host}]" if ":" in host else host
        log.info("Metrics: http://%s:%d/metrics", shown, port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
