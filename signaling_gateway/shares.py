"""Each token's share of the handler pool: its connections' messages run a few at a time.

The handler runs in a pool of workers (or threads). Without a share, one token's many
connections (up to --max-connections-per-token) would fill the pool's queues with expensive
messages and every other client's message would wait behind them. With it, at most
``per_key`` messages of one token (or of one address, without authentication) are at the
handler at once, running or queued there; the rest wait their turn in order, unread.
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

    async def acquire(self, key: str) -> None:
        """Take one of ``key``'s slots, waiting for one if all are taken."""
        share = self._shares.get(key)
        if share is None:
            share = self._shares[key] = _Share(asyncio.Semaphore(self._per_key))
        share.users += 1
        try:
            await share.slots.acquire()
        except BaseException:
            self._leave(key, share)
            raise

    def release(self, key: str) -> None:
        """Give back a slot ``acquire`` took."""
        share = self._shares[key]
        share.slots.release()
        self._leave(key, share)

    def _leave(self, key: str, share: _Share) -> None:
        share.users -= 1
        if not share.users:
            del self._shares[key]

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one of ``key``'s slots while the block runs."""
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)
