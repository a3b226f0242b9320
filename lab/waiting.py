"""Waiting for something in the lab to happen: a condition polled until a deadline."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lab.chromium import BrowserError

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]],
    what: str,
    seconds: float = 60.0,
    context: Callable[[], str] = str,
) -> T:
    """``check()``'s value once it is truthy. It may raise meanwhile (a frame navigating, a
    server not listening yet); after ``seconds``, AssertionError names ``what``, the last
    answer and ``context()``."""
    deadline = asyncio.get_running_loop().time() + seconds
    last: object = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            value = await check()
        except (BrowserError, OSError) as error:
            last = error
        else:
            if value:
                return value
            last = value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds:g} s (last: {last}){context()}")
