"""Timeouts, shutdown and start-up, as API Gateway and systemd would exercise them."""

import asyncio
import socket
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedOK

from lab import token
from lab.gateway import GATEWAY, GatewayProcess
from lab.ws import identify, open_ws, recv_json, request
from tests.support.integration import StartGateway


async def wait_closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    async with asyncio.timeout(15):
        await ws.wait_closed()
    return ws.close_code, ws.close_reason


async def ping_until_closed(ws: ClientConnection) -> None:
    while True:
        await request(ws, {"action": "ping"})
        await asyncio.sleep(0.1)


async def test_idle_connection_is_closed_with_1001(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--idle-timeout", "1")
    ws = await open_ws(gateway.url, token())
    connection_id = await identify(ws)
    assert await wait_closed(ws) == (1001, "Idle timeout")
    gateway.wait_for_log(rf"Closing connection {connection_id}: it was idle for 1 s")


async def test_messages_keep_a_connection_from_going_idle(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--idle-timeout", "2")
    idle = await open_ws(gateway.url, token())
    async with await open_ws(gateway.url, token()) as busy:
        # While the idle one times out, the busy one pings far more often than every 2 s.
        while idle.close_code is None:
            assert (await request(busy, {"action": "ping"}))["action"] == "pong"
            await asyncio.sleep(0.2)
        assert idle.close_code == 1001
        assert (await request(busy, {"action": "ping"}))["action"] == "pong"


async def test_connection_past_the_maximum_age_is_closed_even_when_busy(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway("--max-connection-age", "1.5")
    ws = await open_ws(gateway.url, token())
    with pytest.raises(ConnectionClosedOK):
        await ping_until_closed(ws)
    assert (ws.close_code, ws.close_reason) == (1001, "Maximum connection age")
    gateway.wait_for_log(r"it reached the maximum connection age of 1.5 s")


async def test_sigterm_closes_clients_with_1001_and_exits_0(gateway: GatewayProcess) -> None:
    ws = await open_ws(gateway.url, token())
    await identify(ws)
    assert await asyncio.to_thread(gateway.stop) == 0
    assert ws.close_code == 1001
    log = gateway.log()
    assert "[INFO] Shutting down: closing 1 connections" in log
    assert log.rstrip().endswith("[INFO] Stopped")


def test_prints_the_url_it_serves(gateway: GatewayProcess) -> None:
    assert gateway.url.startswith("ws://127.0.0.1:")
    assert gateway.url.endswith("/prod")


def run_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATEWAY), *args], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read the secret file"),
        (b"short\n", "holds 5 bytes, but a signing secret needs at least 32"),
    ],
    ids=["missing", "too-short"],
)
def test_a_bad_secret_file_is_one_sentence_and_status_2(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_bytes(content)
    result = run_gateway("--port", "0", "--secret-file", str(secret))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "homelab-p2p token new-secret" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_without_secret_or_no_auth_it_says_so(tmp_path: Path) -> None:
    result = run_gateway("--port", "0")
    assert result.returncode == 2
    assert "one of the arguments --secret-file --no-auth is required" in result.stderr


def test_a_port_in_use_is_one_sentence_and_status_1(secret_file: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_gateway(
            "--port", str(port), "--management-port", "0", "--secret-file", str(secret_file)
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_two_clients_see_their_own_connection_ids(gateway: GatewayProcess) -> None:
    async with await open_ws(gateway.url, token()) as a, await open_ws(gateway.url, token()) as b:
        assert await identify(a) != await identify(b)
        await a.send('{"action":"ping"}')
        assert (await recv_json(a))["action"] == "pong"
