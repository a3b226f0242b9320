import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from p2p_runtime.stop import STOP_SIGNALS, stop_on_signal


@pytest.fixture
async def default_handlers() -> AsyncIterator[None]:
    """Whatever a test installs, pytest gets its own SIGINT handling back."""
    yield
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)


@pytest.mark.usefixtures("default_handlers")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_sets_the_event(signum: signal.Signals) -> None:
    stop = stop_on_signal()
    assert not stop.is_set()
    os.kill(os.getpid(), signum)
    async with asyncio.timeout(5):
        await stop.wait()


@pytest.mark.usefixtures("default_handlers")
async def test_a_second_signal_while_stopping_is_harmless() -> None:
    stop = stop_on_signal()
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        await stop.wait()
    await asyncio.sleep(0.05)  # both signals handled: neither reached the default handler
    assert stop.is_set()
