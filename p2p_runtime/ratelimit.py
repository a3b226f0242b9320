"""A token bucket: the per-connection message rate limit, and a sender's pace below one."""

import time
from collections.abc import Callable


class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of ``burst``."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def allow(self) -> bool:
        """Take a token if there is one: True, the event may happen now."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def reserve(self) -> float:
        """Take a token, on credit if there is none: the seconds to wait before the event
        (0 for at once). Events reserved one after another are spaced at the rate."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
