"""Each token's share of the handler pool: its connections' messages run a few at a time.

The handler runs in a pool of threads, one message per connection at a time. Without a
share, one token's many connections (up to --max-connections-per-token) would fill the pool
with expensive messages and every other client's message would wait behind them, the GIL
stretching each. With it, the messages of one token (or of one address, without
authentication) take at most ``per_key`` threads at once; the rest wait their turn in order.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class _Share:
    slots: asyncio.Semaphore
    users: int = field(default=0)


class HandlerShares:
    def __init__(self, per_key: int) -> None:
        self._per_key = per_key
        self._shares: dict[str, _Share] = {}

    def __len__(self) -> int:
        """Keys with a message running or waiting (the others are forgotten)."""
        return len(self._shares)

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one of ``key``'s slots while the block runs."""
        share = self._shares.get(key)
        if share is None:
            share = self._shares[key] = _Share(asyncio.Semaphore(self._per_key))
        share.users += 1
        try:
            async with share.slots:
                yield
        finally:
            share.users -= 1
            if not share.users:
                del self._shares[key]
