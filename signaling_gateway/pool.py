"""How the gateway runs the handler: a pool of worker processes, or threads (the old path).

``HandlerPool`` (the default): N processes forked before the event loop starts, each
running the handler one invocation at a time (worker.py), so the handler's Python runs on
every core beside the gateway's loop, as Lambda runs beside API Gateway. The events of one
connection go to one worker while any of them is pending there, and a worker takes them in
the order they came: so they are handled in order without the gateway waiting for each
before sending the next (``keeps_order``). A connection with nothing pending goes to the least
busy worker (in turn among equals). The workers' management API calls and registry writes come back
here over their channel: posts are delivered without an answer, the rest are answered.

``ThreadInvoker`` (``--handler-workers 0``): the handler in a thread pool of the gateway's
own process, its boto3 calls over HTTP to the management API; one message of a connection
at a time. Kept to compare against and for debugging in one process.
"""

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from signaling_gateway.channel import ChannelClosed, Frame, encode_frame, read_frame
from signaling_gateway.management_api import ManagementOperations
from signaling_gateway.worker import (
    BuildHandler,
    Handler,
    HandlerResponse,
    run_forked,
    run_handler,
)
from signaling_lambda.registry import MemoryRegistry

log = logging.getLogger("signaling_gateway")

EXIT_TIMEOUT = 5.0
"""Seconds a worker has to exit once its channel is closed, before it is killed."""


class Invoker(Protocol):
    keeps_order: bool
    """True: events of one key may be submitted before the earlier ones are answered."""

    async def start(self, operations: ManagementOperations) -> None: ...

    def submit(self, event: dict[str, Any], key: str) -> "asyncio.Future[HandlerResponse]": ...

    def opened(self, connection_id: str) -> None: ...

    def closed(self, connection_id: str) -> None: ...

    async def close(self) -> None: ...


class ThreadInvoker:
    keeps_order = False

    def __init__(self, handler: Handler, threads: int) -> None:
        self._handler = handler
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="handler")

    async def start(self, operations: ManagementOperations) -> None:
        """Nothing to start: the handler reaches the connections over HTTP."""

    def submit(self, event: dict[str, Any], key: str) -> "asyncio.Future[HandlerResponse]":
        return asyncio.wrap_future(self._executor.submit(run_handler, self._handler, event))

    def opened(self, connection_id: str) -> None:
        pass

    def closed(self, connection_id: str) -> None:
        pass

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True)


class PoolError(Exception):
    """The workers could not be started; str() says why."""


@dataclass(eq=False)
class _Worker:
    index: int
    pid: int
    sock: socket.socket
    writer: asyncio.StreamWriter | None = None
    pending: dict[int, tuple["asyncio.Future[HandlerResponse]", str]] = field(default_factory=dict)
    reading: "asyncio.Task[None] | None" = None
    outbox: list[bytes] = field(default_factory=list)

    def send(self, frame: Frame) -> None:
        self.send_encoded(encode_frame(frame))

    def send_encoded(self, data: bytes) -> None:
        """Queue a frame; the frames of one loop iteration leave in one write (one wake-up
        of the worker for all of them)."""
        if self.writer is None or self.writer.is_closing():
            return
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outbox.append(data)

    def flush(self) -> None:
        if self.outbox and self.writer is not None and not self.writer.is_closing():
            self.writer.write(b"".join(self.outbox))
        self.outbox.clear()


class HandlerPool:
    keeps_order = True

    def __init__(
        self,
        size: int,
        stage: str,
        registry_ttl: float,
        build_handler: BuildHandler,
        on_all_lost: Callable[[], None] | None = None,
    ) -> None:
        """Fork ``size`` workers now: call it before any thread or event loop is started."""
        self._registry = MemoryRegistry(registry_ttl)
        self.on_all_lost = on_all_lost
        """Called when the last worker is gone (the gateway cannot handle anything then)."""
        self._workers: list[_Worker] = []
        self._by_key: dict[str, tuple[_Worker, int]] = {}
        """The worker each key's pending events are at, and how many there are."""
        self._seq = itertools.count()
        self._turns = itertools.count()
        self._operations: ManagementOperations | None = None
        self._exits: set[asyncio.Task[None]] = set()
        for index in range(size):
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                ours.close()
                for other in self._workers:  # a worker holds only its own channel
                    other.sock.close()
                run_forked(theirs, stage, registry_ttl, build_handler)
            theirs.close()
            self._workers.append(_Worker(index, pid, ours))

    async def start(self, operations: ManagementOperations) -> None:
        """Open the channels and wait until every worker has built its handler."""
        self._operations = operations
        for worker in self._workers:
            reader, worker.writer = await asyncio.open_connection(sock=worker.sock)
            try:
                frame = await read_frame(reader)
            except ChannelClosed:
                raise PoolError(
                    f"handler worker {worker.index} did not start (its log lines above say why)"
                ) from None
            if frame != ("ready",):
                raise PoolError(f"handler worker {worker.index} began with {frame[0]!r}")
            worker.reading = asyncio.create_task(
                self._read(worker, reader), name=f"handler-worker-{worker.index}"
            )

    def submit(self, event: dict[str, Any], key: str) -> "asyncio.Future[HandlerResponse]":
        future: asyncio.Future[HandlerResponse] = asyncio.get_running_loop().create_future()
        if not self._workers:
            future.set_result(None)
            return future
        worker, pending = self._by_key.get(key, (None, 0))
        if worker is None:
            # The least busy; among equals, in turn (an idle pool spreads connections).
            turn = next(self._turns) % len(self._workers)
            in_turn = self._workers[turn:] + self._workers[:turn]
            worker = min(in_turn, key=lambda w: len(w.pending))
        self._by_key[key] = (worker, pending + 1)
        seq = next(self._seq)
        worker.pending[seq] = (future, key)
        worker.send(("invoke", seq, event))
        return future

    def opened(self, connection_id: str) -> None:
        self._broadcast(("opened", connection_id))

    def closed(self, connection_id: str) -> None:
        self._broadcast(("closed", connection_id))

    def _broadcast(self, frame: Frame) -> None:
        data = encode_frame(frame)
        for worker in self._workers:
            worker.send_encoded(data)

    async def close(self) -> None:
        """Close every channel (the workers then exit) and wait for the workers."""
        for worker in self._workers:
            worker.flush()
            if worker.writer is not None:
                worker.writer.close()
        readers = [w.reading for w in self._workers if w.reading is not None]
        await asyncio.gather(*readers, return_exceptions=True)
        for worker in list(self._workers):
            self._lost(worker, why=None)
        await asyncio.gather(*self._exits, return_exceptions=True)

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        why = "it closed its channel"
        try:
            while True:
                frame = await read_frame(reader)
                kind = frame[0]
                if kind == "result":
                    self._answered(worker, frame[1], frame[2])
                elif kind == "post":
                    assert self._operations is not None
                    await self._operations.post(frame[1], frame[2])
                elif kind == "call":
                    worker.send(("reply", frame[1], await self._answer(frame[2], frame[3])))
        except ChannelClosed as exc:
            why = f"its channel closed ({exc})"
        except Exception:
            log.exception(
                "Handler worker %d sent what the gateway cannot use (a bug)", worker.index
            )
            why = "it sent a frame the gateway cannot use"
        if worker.writer is not None and not worker.writer.is_closing():
            self._lost(worker, why)

    def _answered(self, worker: _Worker, seq: int, response: HandlerResponse) -> None:
        future, key = worker.pending.pop(seq)
        _, pending = self._by_key[key]
        if pending > 1:
            self._by_key[key] = (worker, pending - 1)
        else:
            del self._by_key[key]
        if not future.done():
            future.set_result(response)

    async def _answer(self, op: str, args: tuple[Any, ...]) -> Any:
        assert self._operations is not None
        if op == "register":
            name, connection_id = args
            self._registry.register(name, connection_id)
            self._broadcast(("registered", name, connection_id))
            return None
        if op == "unregister":
            name, connection_id = args
            dropped = self._registry.unregister(name, connection_id)
            if dropped:
                self._broadcast(("unregistered", name, connection_id))
            return dropped
        if op == "get":
            return self._operations.info(args[0])
        if op == "delete":
            return self._operations.delete(args[0])
        raise ValueError(f"unknown call {op!r}")

    def _lost(self, worker: _Worker, why: str | None) -> None:
        """Take ``worker`` out of the pool: its pending events fail (None), it is reaped."""
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        if worker.writer is not None:
            worker.writer.close()
        for future, key in worker.pending.values():
            self._by_key.pop(key, None)
            if not future.done():
                future.set_result(None)
        if why is not None:
            log.error(
                "Handler worker %d (pid %d) is gone: %s; %d pending messages failed, %d workers "
                "left (a bug: its log lines above say why)",
                worker.index,
                worker.pid,
                why,
                len(worker.pending),
                len(self._workers),
            )
            if not self._workers and self.on_all_lost is not None:
                self.on_all_lost()
        worker.pending.clear()
        task = asyncio.create_task(_reap(worker.pid), name=f"reap-worker-{worker.index}")
        self._exits.add(task)
        task.add_done_callback(self._exits.discard)


async def _reap(pid: int) -> None:
    """Wait for a worker to exit; kill it if it does not within EXIT_TIMEOUT."""
    exited = asyncio.ensure_future(asyncio.to_thread(os.waitpid, pid, 0))
    try:
        await asyncio.wait_for(asyncio.shield(exited), EXIT_TIMEOUT)
    except TimeoutError:
        log.warning("Handler worker pid %d did not exit in %g s: killing it", pid, EXIT_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await exited


def default_worker_count() -> int:
    """One handler worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))
