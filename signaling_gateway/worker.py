"""A handler worker: the signaling handler in a process of its own, beside the gateway's loop.

As Lambda runs beside API Gateway: the gateway (pool.py) sends each event to a worker, which
runs ``SignalingApp.handle`` on it, one at a time and in the order they came, and sends the
response back. The handler's boto3 management client is answered in process (inprocess.py)
and its registry is the gateway's (``SharedRegistry``), so what one worker registers every
other one sees.
"""

import collections
import itertools
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from signaling_gateway.channel import BlockingChannel, ChannelClosed, Frame
from signaling_gateway.events import LambdaContext
from signaling_gateway.inprocess import InProcessManagementApi
from signaling_lambda.registry import MemoryRegistry

log = logging.getLogger("signaling_gateway")


class Handler(Protocol):
    def handle(self, event: object, context: object = None) -> dict[str, Any]: ...


HandlerResponse = dict[str, Any] | None
"""A handler's response; None if it raised (a bug, logged where it ran)."""


def run_handler(handler: Handler, event: dict[str, Any]) -> HandlerResponse:
    """``handler.handle(event)`` with a Lambda-like context; a raise is logged (a bug)."""
    try:
        response = handler.handle(event, LambdaContext(event["requestContext"]["requestId"]))
    except Exception:
        log.exception("The handler raised on %s (a bug)", event["requestContext"]["routeKey"])
        return None
    return response if isinstance(response, dict) else None


class SharedRegistry:
    """The gateway's registry as a worker sees it.

    Lookups read a copy that the gateway's ``registered``/``unregistered`` frames keep current
    (every frame sent after a write carries it); writes are asked of the gateway, which
    applies them, tells every worker, and only then answers.
    """

    source = MemoryRegistry.source

    def __init__(self, copy: MemoryRegistry, call: Callable[[str, tuple[Any, ...]], Any]) -> None:
        self._copy = copy
        self._call = call

    def lookup(self, name: str) -> str | None:
        return self._copy.lookup(name)

    def register(self, name: str, connection_id: str) -> None:
        self._call("register", (name, connection_id))

    def unregister(self, name: str, connection_id: str) -> bool:
        return bool(self._call("unregister", (name, connection_id)))


BuildHandler = Callable[[InProcessManagementApi, SharedRegistry], Handler]
"""Makes the worker's handler from its management API transport and registry."""


class Worker:
    def __init__(self, channel: BlockingChannel, stage: str, registry_ttl: float) -> None:
        self._channel = channel
        self._open: set[str] = set()
        self._registry_copy = MemoryRegistry(registry_ttl)
        self._deferred: collections.deque[Frame] = collections.deque()
        self._calls = itertools.count()
        self.management = InProcessManagementApi(stage, self._open, self._post, self._ask)
        self.registry = SharedRegistry(self._registry_copy, self._ask)

    def run(self, handler: Handler) -> None:
        """Handle invocations until the gateway closes the channel (ChannelClosed)."""
        self._channel.send(("ready",))
        while True:
            frame = self._deferred.popleft() if self._deferred else self._channel.receive()
            if frame[0] == "invoke":
                self._channel.send(("result", frame[1], run_handler(handler, frame[2])))
            else:
                self._apply(frame)

    def _apply(self, frame: Frame) -> None:
        kind = frame[0]
        if kind == "opened":
            self._open.add(frame[1])
        elif kind == "closed":
            self._open.discard(frame[1])
        elif kind == "registered":
            self._registry_copy.register(frame[1], frame[2])
        elif kind == "unregistered":
            self._registry_copy.unregister(frame[1], frame[2])

    def _post(self, connection_id: str, data: bytes) -> None:
        self._channel.send(("post", connection_id, data))

    def _ask(self, op: str, args: tuple[Any, ...]) -> Any:
        """The gateway's answer to ``op``; invocations arriving meanwhile wait their turn."""
        seq = next(self._calls)
        self._channel.send(("call", seq, op, args))
        while True:
            frame = self._channel.receive()
            if frame[0] == "reply" and frame[1] == seq:
                return frame[2]
            if frame[0] == "invoke":
                self._deferred.append(frame)
            else:
                self._apply(frame)


def run_forked(
    sock: socket.socket, stage: str, registry_ttl: float, build_handler: BuildHandler
) -> None:
    """The body of a forked worker process; never returns."""
    # The gateway decides when to stop (Ctrl-C and systemd signal the whole group): a worker
    # ends when its channel closes, after the gateway has run every $disconnect.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log_stream = _buffered_stderr()
    status = 0
    try:
        worker = Worker(BlockingChannel(sock, log_stream.flush), stage, registry_ttl)
        worker.run(build_handler(worker.management, worker.registry))
    except ChannelClosed:
        pass
    except BaseException:
        log.exception("A handler worker failed (a bug)")
        status = 1
    finally:
        log_stream.flush()
        sys.stderr.flush()
        os._exit(status)


def _buffered_stderr() -> TextIO:
    """Standard error for the log handlers, flushed when the worker waits rather than per
    line: a worker writes about five lines per message, and each write is a system call."""
    stream = open(  # noqa: SIM115 - open for the life of the process
        sys.stderr.fileno(),
        "w",
        buffering=65536,
        encoding=sys.stderr.encoding,
        errors="backslashreplace",
        closefd=False,
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(stream)
    return stream
