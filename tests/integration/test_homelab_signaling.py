"""The homelab's signaling connection against a real gateway: register, keep alive, recover."""

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from homelab_server.config import DaemonConfig
from homelab_server.signaling import HomelabSignaling
from lab import token
from lab.gateway import GatewayProcess
from lab.ws import identify, open_ws, recv_json, send_json
from signaling_client.link import Link
from tests.support.integration import StartGateway


class Inbox:
    def __init__(self) -> None:
        self.signals: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.errors: list[dict[str, Any]] = []

    async def on_signal(self, sender: str, data: Any) -> None:
        await self.signals.put((sender, data))

    async def on_error(self, message: dict[str, Any]) -> None:
        self.errors.append(message)


def config_for(gateway: GatewayProcess, **changes: Any) -> DaemonConfig:
    base = DaemonConfig(
        signaling_url=gateway.url, token=token("homelab", "laptop"), reconnect_max_delay=1
    )
    return replace(base, **changes)


@contextlib.asynccontextmanager
async def running(signaling: HomelabSignaling) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(signaling.run())
    try:
        async with asyncio.timeout(20):
            await signaling.registered.wait()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_registers_and_logs_its_connection_id(
    gateway: GatewayProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="homelab_server")
    inbox = Inbox()
    signaling = HomelabSignaling(config_for(gateway), inbox.on_signal, inbox.on_error)
    async with running(signaling):
        connection_id = signaling.connection_id
        assert connection_id is not None
        assert f"Registered as 'laptop': connection id {connection_id}" in caplog.text
        gateway.wait_for_log(rf"Registered 'laptop': LAPTOP_ID is now {re.escape(connection_id)}")
        async with await open_ws(gateway.url, token()) as client:
            client_id = await identify(client)
            await send_json(
                client,
                {"action": "sendSignal", "to": "laptop", "data": {"type": "offer", "sdp": "v=0"}},
            )
            sender, data = await asyncio.wait_for(inbox.signals.get(), 10)
            assert (sender, data) == (client_id, {"type": "offer", "sdp": "v=0"})
            assert await signaling.send_signal(client_id, {"type": "answer", "sdp": "v=0"})
            assert (await recv_json(client))["data"] == {"type": "answer", "sdp": "v=0"}


async def test_data_pings_keep_it_past_the_idle_timeout(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--idle-timeout", "2")
    inbox = Inbox()
    signaling = HomelabSignaling(
        config_for(gateway, ping_interval=0.5), inbox.on_signal, inbox.on_error
    )
    async with running(signaling):
        first = signaling.connection_id
        # Three idle timeouts long: without its pings the gateway would have closed it.
        async with await open_ws(gateway.url, token()) as watcher:
            for _ in range(30):
                await asyncio.sleep(0.2)
                await send_json(watcher, {"action": "ping"})
                await recv_json(watcher)
        assert signaling.connection_id == first
        assert "Idle timeout" not in gateway.log()
        assert gateway.log().count("RouteKey: ping") >= 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_re_registers_after_the_gateway_comes_back(
    tmp_path: Path, secret_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="homelab_server")
    port = free_port()
    args = ["--port", str(port), "--management-port", "0", "--secret-file", str(secret_file)]
    gateway = GatewayProcess(args, tmp_path / "first.log").start()
    inbox = Inbox()
    signaling = HomelabSignaling(config_for(gateway), inbox.on_signal, inbox.on_error)
    async with running(signaling):
        first = signaling.connection_id
        gateway.kill()  # SIGKILL: no close frames, the TCP connection just dies
        await asyncio.wait_for(signaling.disconnected.wait(), 30)
        assert "reconnecting" in caplog.text
        again = GatewayProcess(args, tmp_path / "second.log").start()
        try:
            async with asyncio.timeout(30):
                await signaling.registered.wait()
            assert signaling.connection_id not in (None, first)
            again.wait_for_log("Registered 'laptop'")
        finally:
            again.stop()


async def test_rotation_registers_the_new_connection_before_closing_the_old(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Make before break: offers sent throughout a rotation all reach the homelab."""
    caplog.set_level("INFO", logger="homelab_server")
    gateway = start_gateway("--max-connection-age", "8")
    inbox = Inbox()
    signaling = HomelabSignaling(
        config_for(gateway, max_connection_age=3), inbox.on_signal, inbox.on_error
    )
    async with running(signaling), await open_ws(gateway.url, token()) as client:
        first = signaling.connection_id
        sent = 0
        while signaling.connection_id == first or sent < 10:
            await send_json(client, {"action": "sendSignal", "to": "laptop", "data": {"n": sent}})
            sent += 1
            await asyncio.sleep(0.1)
            assert sent < 150, "no rotation within 15 s"
        for _ in range(10):  # and some after it
            await send_json(client, {"action": "sendSignal", "to": "laptop", "data": {"n": sent}})
            sent += 1
            await asyncio.sleep(0.1)
        received = [
            json.dumps(data)
            for _, data in [await asyncio.wait_for(inbox.signals.get(), 10) for _ in range(sent)]
        ]
        assert received == [json.dumps({"n": n}) for n in range(sent)]
        with contextlib.suppress(TimeoutError):  # nothing came back as an error either
            async with asyncio.timeout(0.5):
                unexpected = await recv_json(client)
                pytest.fail(f"the client got {unexpected}")
        assert "due for replacement" in caplog.text
        assert re.search(r"now on connection \S+; closing \S+ in", caplog.text)


class LogLine(logging.Handler):
    """Sets ``seen`` when a line matching ``pattern`` is logged by homelab_server."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.pattern.search(record.getMessage()):
            self.seen.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator["LogLine"]:
        logger = logging.getLogger("homelab_server")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


async def test_a_failed_replacement_keeps_the_connection_and_retries_soon(
    gateway: GatewayProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The token file is read at each attempt: a bad one stops rotations, not the service."""
    caplog.set_level("INFO", logger="homelab_server")
    token_file = tmp_path / "token"
    token_file.write_text(token("homelab", "laptop"))
    config = config_for(gateway, token=None, token_file=token_file, max_connection_age=2)
    inbox = Inbox()
    signaling = HomelabSignaling(config, inbox.on_signal, inbox.on_error)
    async with running(signaling):
        first = signaling.connection_id
        with LogLine(
            r"the replacement failed .*; keeping \S+, trying again in"
        ).installed() as failed:
            token_file.write_text(token("client", "laptop"))  # cannot register
            await asyncio.wait_for(failed.seen.wait(), 20)
        assert signaling.connection_id == first
        with LogLine(r"now on connection").installed() as replaced:
            token_file.write_text(token("homelab", "laptop"))
            await asyncio.wait_for(replaced.seen.wait(), 20)
        assert signaling.connection_id != first
        assert "reconnecting" not in caplog.text


async def test_a_burst_past_the_gateways_rate_limit_is_paced_not_refused(
    gateway: GatewayProcess,
) -> None:
    """A homelab answering many clients at once sends more than the gateway's 100 messages a
    second (bursts of 200): its link paces them, and every one arrives."""
    inbox = Inbox()
    link = await Link.open(gateway.url, token(), inbox.on_signal, inbox.on_error)
    try:
        burst = 300
        await asyncio.gather(
            *(link.send({"action": "sendSignal", "to": "me", "data": n}) for n in range(burst))
        )
        received = [(await asyncio.wait_for(inbox.signals.get(), 20))[1] for _ in range(burst)]
    finally:
        await link.close()
    assert received == list(range(burst))  # all of them, in the order sent
    assert inbox.errors == []
    assert "sends more than" not in gateway.log()
