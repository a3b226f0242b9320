"""Stopping on SIGTERM or SIGINT, as every long-running command of the project does."""

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANGUP_SIGNALS = (signal.SIGHUP, *STOP_SIGNALS)


def stop_on_signal() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets, from now until the running loop closes.

    Call it before saying that the process is ready, so that a supervisor that signals
    as soon as it reads that line never finds the default handlers still in place.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    return stop


async def run_until_signalled(work: Coroutine[Any, Any, int]) -> int:
    """``work``'s exit status; SIGHUP, SIGTERM or SIGINT cancel it instead, and once its
    cleanup has run the status is 128 + the signal's number (as a shell reports it).

    ssh ends its ProxyCommand with SIGHUP: a command that simply died of it would not close
    what it holds, and its peer would learn it only from a timeout.
    """
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in HANGUP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise  # cancelled from outside, not by a signal
        return 128 + received[0]
    finally:
        for signum in HANGUP_SIGNALS:
            loop.remove_signal_handler(signum)
