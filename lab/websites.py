"""An aiohttp application served inside a lab namespace, for as long as a block runs."""

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from lab.netns import Namespace


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, namespace: Namespace, port: int, host: str = "127.0.0.1"
) -> AsyncIterator[None]:
    """``app`` listening on ``host``:``port`` in ``namespace``; stopped when the block ends."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, namespace.socket_listening(host, port)).start()
    try:
        yield
    finally:
        await runner.cleanup()
