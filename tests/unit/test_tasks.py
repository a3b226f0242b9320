import asyncio
import logging

import pytest

from p2p_runtime.tasks import OwnedTasks

log = logging.getLogger("test_tasks")


async def test_wait_returns_once_every_task_has_ended() -> None:
    tasks = OwnedTasks(log, "Sleeping")
    done: list[int] = []

    async def sleep(n: int) -> None:
        await asyncio.sleep(0.01 * n)
        done.append(n)

    for n in (3, 1, 2):
        tasks.spawn(sleep(n), name=f"sleep-{n}")
    assert len(tasks) == 3
    await tasks.wait()
    assert sorted(done) == [1, 2, 3]
    assert len(tasks) == 0
    await tasks.wait()  # nothing left: returns at once


async def test_a_task_that_raises_is_logged_as_a_bug(caplog: pytest.LogCaptureFixture) -> None:
    tasks = OwnedTasks(log, "Doing a thing")

    async def fail() -> None:
        raise RuntimeError("boom")

    tasks.spawn(fail())
    await tasks.wait()
    assert "Doing a thing failed (a bug)" in caplog.text
    assert "RuntimeError: boom" in caplog.text


async def test_cancel_ends_the_tasks_still_running() -> None:
    tasks = OwnedTasks(log, "Waiting")

    async def forever() -> None:
        await asyncio.Event().wait()

    tasks.spawn(forever())
    tasks.spawn(forever())
    await asyncio.sleep(0)
    await tasks.cancel()
    await asyncio.sleep(0)
    assert len(tasks) == 0
