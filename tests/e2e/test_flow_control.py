"""Backpressure: a slow reader at either end keeps the bridge's memory bounded, and nothing is lost.

The client pushes 60 MB at a service that reads 3 MB/s (and the homelab's service pushes 60 MB
at a client that reads as slowly). Without flow control the bridge in the middle would hold
most of it; with it, it holds at most the SCTP window plus its high-water marks (a few MB).
"""

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator

import psutil

from lab.bridge import LoggedProcess
from lab.netns import Namespace
from tests.e2e.conftest import LanLab

TOTAL = 60 * 1024 * 1024
SLOW_READ = 64 * 1024  # per 20 ms: about 3 MB/s
GROWTH_LIMIT = 24 * 1024 * 1024  # measured: 3 MB with flow control, 40-50 MB without


async def read_slowly(reader: asyncio.StreamReader, total: int) -> str:
    digest = hashlib.sha256()
    received = 0
    while received < total:
        data = await reader.read(SLOW_READ)
        if not data:
            break
        digest.update(data)
        received += len(data)
        await asyncio.sleep(0.02)
    return f"{received} bytes, sha256 {digest.hexdigest()}"  # a short read shows as such


async def write_fast(writer: asyncio.StreamWriter, total: int, seed: bytes) -> str:
    digest = hashlib.sha256()
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB, the same on every run
    for _ in range(total // len(block)):
        writer.write(block)
        digest.update(block)
        await writer.drain()
    return f"{total // len(block) * len(block)} bytes, sha256 {digest.hexdigest()}"


class PeakRss:
    """Samples a process's resident memory while a transfer runs."""

    def __init__(self, process: LoggedProcess) -> None:
        self._process = psutil.Process(process.process.pid)
        self.start = self._process.memory_info().rss
        self.peak = self.start
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        self._task = asyncio.create_task(self._sample())
        try:
            yield
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def growth(self) -> int:
        return self.peak - self.start


@contextlib.asynccontextmanager
async def service(namespace: Namespace, port: int, handler) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, sock=namespace.socket_listening("127.0.0.1", port))
    try:
        yield
    finally:
        server.close()


async def test_a_slow_service_slows_the_client_down(lan: LanLab) -> None:
    digests: asyncio.Queue[str] = asyncio.Queue()

    async def slow_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await digests.put(await read_slowly(reader, TOTAL))
        writer.close()

    async with service(lan.homelab, 7010, slow_sink):
        daemon = await lan.start_daemon({"sink": "tcp://127.0.0.1:7010"})
        forward, port = await lan.start_forward("sink")
        _, writer = await asyncio.open_connection(
            sock=lan.client.socket_connected("127.0.0.1", port)
        )
        daemon_memory = PeakRss(daemon)
        async with daemon_memory.watching():
            sent = await write_fast(writer, TOTAL, os.urandom(16))
            received = await asyncio.wait_for(digests.get(), 120)
        assert received == sent
        assert daemon_memory.growth < GROWTH_LIMIT, (
            f"the daemon grew by {daemon_memory.growth / 2**20:.1f} MB"
        )
        writer.close()
        forward.stop()


async def test_a_slow_client_reader_slows_the_service_down(lan: LanLab) -> None:
    sent: asyncio.Queue[str] = asyncio.Queue()

    async def fast_source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await sent.put(await write_fast(writer, TOTAL, b"source"))
        writer.close()

    async with service(lan.homelab, 7011, fast_source):
        await lan.start_daemon({"source": "tcp://127.0.0.1:7011"})
        forward, port = await lan.start_forward("source")
        reader, writer = await asyncio.open_connection(
            sock=lan.client.socket_connected("127.0.0.1", port)
        )
        client_memory = PeakRss(forward)
        async with client_memory.watching():
            received = await asyncio.wait_for(read_slowly(reader, TOTAL), 120)
        assert received == await asyncio.wait_for(sent.get(), 30), forward.log()
        assert client_memory.growth < GROWTH_LIMIT, (
            f"the client grew by {client_memory.growth / 2**20:.1f} MB"
        )
        writer.close()
        forward.stop()
