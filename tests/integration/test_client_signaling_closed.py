"""The client when signaling closes its connection in the middle of a negotiation.

A real WebSocket server on loopback stands in for a signaling service that restarts: it
accepts the client, then closes. The client must say so at once, as a signaling error,
not wait out its timeout and then blame the homelab for not answering.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from websockets.asyncio.server import ServerConnection, serve

from homelab_p2p.client import BridgeClient, ClientError, ClientOptions, ClientStep
from lab import credential
from p2p_webrtc import IcePolicy

Behaviour = Callable[[ServerConnection], Awaitable[None]]

OPTIONS = ClientOptions(
    signaling_url="",
    token="t",
    target="laptop",
    credential=credential(),
    ice=IcePolicy(),  # no ICE server: host candidates only, nothing leaves the machine
    # Long enough that a client still waiting it out fails the test's wording check, not CI.
    timeout=60.0,
    fall_forward=0,
)


@contextlib.asynccontextmanager
async def signaling_service(behaviour: Behaviour) -> AsyncIterator[str]:
    async with serve(behaviour, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/prod"


async def connect_error(url: str) -> ClientError:
    client = BridgeClient(replace(OPTIONS, signaling_url=url))
    try:
        with pytest.raises(ClientError) as raised:
            await client.connect()
    finally:
        await client.close()
    return raised.value


async def test_signaling_closing_after_the_offer_is_a_signaling_error_at_once() -> None:
    offers: list[str | bytes] = []

    async def take_the_offer_and_close(ws: ServerConnection) -> None:
        offers.append(await ws.recv())
        await ws.close(1001, "going away")

    async with signaling_service(take_the_offer_and_close) as url:
        error = await connect_error(url)
    assert len(offers) == 1
    assert '"offer"' in str(offers[0])
    assert error.step is ClientStep.SIGNALING
    assert str(error) == (
        "the signaling connection closed before 'laptop' answered the offer; check that the "
        "signaling service is up (homelab-p2p doctor) and try again"
    )


async def test_signaling_closing_before_the_offer_is_a_signaling_error() -> None:
    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close(1001, "going away")

    async with signaling_service(close_at_once) as url:
        error = await connect_error(url)
    # The offer's send fails, or it leaves before the close arrives and the wait sees the
    # link close: either way one signaling error that says the connection closed.
    assert error.step is ClientStep.SIGNALING
    assert "the signaling connection closed" in str(error)
    assert "did not answer" not in str(error)


async def test_the_closed_link_leaves_no_task_behind() -> None:
    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close(1001, "going away")

    before = asyncio.all_tasks()
    async with signaling_service(close_at_once) as url:
        await connect_error(url)
    await asyncio.sleep(0)  # let cancelled tasks finish cancelling
    assert asyncio.all_tasks() - before == set()
