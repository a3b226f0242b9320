"""systemd's watchdog (``WatchdogSec=``): ping while healthy, so a hung process is restarted.

systemd passes the interval in ``$WATCHDOG_USEC`` (and the main PID in ``$WATCHDOG_PID``);
the service sends ``WATCHDOG=1`` more often than that. The pings come from a task of the
event loop, so a blocked loop stops them by itself; ``health`` adds what the loop alone does
not show (a signaling session stuck on one step).
"""

import asyncio
import logging
import os
from collections.abc import Callable, Mapping

from p2p_runtime.sdnotify import notify

log = logging.getLogger("p2p_runtime")

Health = Callable[[], str | None]
"""None when healthy, else why not (one sentence)."""


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds systemd waits for a ping; None when it watches nothing (or another process)."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000


async def keep_watchdog(interval: float, health: Health) -> None:
    """Ping every ``interval`` / 2 while ``health()`` finds nothing wrong (until cancelled)."""
    wrong: str | None = None
    while True:
        why = health()
        if why is None:
            notify(WATCHDOG="1")
            if wrong is not None:
                log.warning("Watchdog: healthy again, pinging systemd")
        elif why != wrong:
            log.error(
                "Watchdog: not pinging systemd: %s; it restarts the service %g s after the last "
                "ping",
                why,
                interval,
            )
        wrong = why
        await asyncio.sleep(interval / 2)
