"""Stopping on SIGTERM or SIGINT, as every long-running command of the project does."""

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
