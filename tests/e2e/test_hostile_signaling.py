"""Hostile clients with a valid client token against the gateway (issue 13, signaling half).

The gateway runs in a namespace of its own; the attackers connect from the client host (and
the homelab host, for a second source address). Each test is one row of the issue's table.
"""

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from lab import token
from lab.gateway import GatewayProcess
from lab.netns import Namespace
from lab.ws import REPLY_TIMEOUT, identify, recv_json, request, send_json
from tests.e2e.conftest import LanLab

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(autouse=True)
def no_traceback(lan: LanLab) -> Iterator[None]:
    """Bad input is a WARNING line: a traceback in the gateway's log is a bug."""
    yield
    assert "Traceback" not in lan.gateway.log(), lan.gateway.log()


async def connect_from(
    host: Namespace, url: str, presented: str | None, reads: bool = True
) -> ClientConnection:
    """A WebSocket client on ``host``; ``presented`` goes into the URL as it is.

    One that ``reads=False`` keeps as little unread on its side as it can (one message,
    a small socket buffer): an attacker who wants the gateway to hold what it never reads.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    target = f"{url}?token={presented}" if presented is not None else url
    sock = host.socket_connected(parts.hostname, parts.port)
    if not reads:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    return await connect(
        target,
        sock=sock,
        open_timeout=10,
        ping_interval=None,
        compression=None,
        max_queue=16 if reads else 1,
    )


async def refused_status(host: Namespace, url: str, presented: str) -> tuple[int, bytes]:
    """The HTTP status and body refusing a handshake (which must be refused)."""
    with pytest.raises(InvalidStatus) as refused:
        await connect_from(host, url, presented)
    return refused.value.response.status_code, bytes(refused.value.response.body or b"")


async def watch_log(gateway: GatewayProcess, lines: dict[str, asyncio.Event]) -> None:
    """Set each event once its pattern is in the gateway's log."""
    while not all(event.is_set() for event in lines.values()):
        log = await asyncio.to_thread(gateway.log)
        for pattern, event in lines.items():
            if re.search(pattern, log):
                event.set()
        await asyncio.sleep(0.05)


async def flood(ws: ClientConnection) -> None:
    message = json.dumps({"action": "sendSignal", "to": "me", "data": "x" * 60_000})
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.send(message)
            await asyncio.sleep(0)


async def flood_without_reading(ws: ClientConnection, closed: asyncio.Event) -> ClientConnection:
    """Echo ~60 KB messages to itself, never reading, until ``closed``; then read it all.

    The gateway's close frame waits behind everything the client left unread.
    """
    flooding = asyncio.create_task(flood(ws))
    await closed.wait()
    flooding.cancel()  # its send may wait for ever: the gateway reads nothing once closing
    await asyncio.gather(flooding, return_exceptions=True)
    with contextlib.suppress(ConnectionClosed, TimeoutError):  # the caller checks how it ended
        async with asyncio.timeout(REPLY_TIMEOUT):
            async for _ in ws:
                pass
    return ws


async def ping_until(ws: ClientConnection, done: asyncio.Task[None]) -> int:
    """Ping until ``done``; every ping must be answered within the normal reply timeout."""
    answered = 0
    while not done.done() or answered == 0:
        reply = await request(ws, {"action": "ping"})
        assert reply.get("action") == "pong", reply
        answered += 1
        await asyncio.sleep(0.05)  # 20 a second: well under the rate limit
    return answered


async def test_clients_that_never_read_are_closed_and_never_stall_the_others(
    lan: LanLab,
) -> None:
    """Row 4: 16 connections that never read their socket flood echoes to themselves."""
    gateway = lan.gateway
    attackers = [
        await connect_from(lan.client, gateway.url, token("client", "attacker"), reads=False)
        for _ in range(16)
    ]
    ids = [await identify(ws) for ws in attackers]  # the last thing they ever read
    closed = {
        rf"\[WARNING\] Closing connection {re.escape(connection_id)} with 1008: it does not "
        r"read its messages \(\d+ bytes unsent, more than --max-send-buffer 1048576\)": (
            asyncio.Event()
        )
        for connection_id in ids
    }
    async with await connect_from(lan.client, gateway.url, token("client", "bystander")) as good:
        flooding = [
            asyncio.create_task(flood_without_reading(ws, event))
            for ws, event in zip(attackers, closed.values(), strict=True)
        ]
        try:
            async with asyncio.timeout(30), asyncio.TaskGroup() as both:
                watching = both.create_task(watch_log(gateway, closed))
                pinging = both.create_task(ping_until(good, watching))
        finally:
            for event in closed.values():
                event.set()  # stop flooding; read what is left
            drained = await asyncio.gather(*flooding)
        assert pinging.result() >= 1
    for ws, connection_id in zip(drained, ids, strict=True):
        assert (ws.close_code, ws.close_reason) == (1008, "It does not read its messages")
        assert gateway.log().count(f"Closing connection {connection_id} with 1008") == 1


async def test_non_ascii_and_altered_tokens_are_refused_cleanly(lan: LanLab) -> None:
    """Row 8: odd tokens in the URL get 401, in ``register`` ``unauthorized``; no 500."""
    url = lan.gateway.url
    valid = token("homelab", "laptop")
    signature = valid.rsplit(".", 1)[1]
    # The last character carries two unused bits: flipping one spells the same bytes.
    altered = valid[:-1] + ALPHABET[ALPHABET.index(valid[-1]) ^ 1]
    for presented in ["hp1.%C3%A9.x", f"hp1.%C3%A9.{signature}", valid + "!!", altered]:
        assert (await refused_status(lan.client, url, presented))[0] == 401, presented
    lan.gateway.wait_for_log(
        r"\[WARNING\] Connection refused, returning 401: the token holds characters other "
        "than ASCII"
    )
    async with await connect_from(lan.homelab, url, valid) as ws:
        for presented in [f"hp1.é.{signature}", altered, valid + "!!", valid + "AAAA"]:
            reply = await request(ws, {"action": "register", "name": "laptop", "token": presented})
            assert reply["error"] == "unauthorized", (presented, reply)
        registered = await request(ws, {"action": "register", "name": "laptop", "token": valid})
        assert registered["action"] == "registered"
    assert "Internal server error" not in lan.gateway.log()


async def test_nan_and_infinity_are_refused_and_never_relayed(lan: LanLab) -> None:
    """Row 9: JSON has no NaN or Infinity, so the gateway neither takes nor sends them."""
    url = lan.gateway.url
    homelab = token("homelab", "laptop")
    async with (
        await connect_from(lan.homelab, url, homelab) as target,
        await connect_from(lan.client, url, token()) as sender,
    ):
        await send_json(target, {"action": "register", "name": "laptop", "token": homelab})
        assert (await recv_json(target))["action"] == "registered"
        for number in ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]:
            for to in ("laptop", "me"):
                await sender.send(f'{{"action":"sendSignal","to":"{to}","data":{number}}}')
                reply = await recv_json(sender)
                assert reply["error"] == "bad_request", (number, reply)
                assert "JSON has no such numbers" in reply["message"]
        # Messages of one sender are handled in order: had anything been relayed, it
        # would arrive before this.
        await send_json(sender, {"action": "sendSignal", "to": "laptop", "data": "after"})
        assert (await recv_json(target))["data"] == "after"


async def connect_when_free(host: Namespace, url: str, presented: str) -> ClientConnection:
    """Connect, trying again while a cap refuses: a place freed by a refused handshake
    comes back once its TCP connection has ended at the gateway; a leaked one never does."""
    async with asyncio.timeout(10):
        while True:
            try:
                return await connect_from(host, url, presented)
            except InvalidStatus as refused:
                if refused.response.status_code not in (429, 503):
                    raise
            await asyncio.sleep(0.1)


@pytest.mark.gateway_args(
    "--max-connections",
    "5",
    "--max-connections-per-ip",
    "3",
    "--max-connections-per-token",
    "2",
)
async def test_connection_caps_refuse_past_each_cap_and_give_places_back(lan: LanLab) -> None:
    """Row 10: one token and one address cannot hold the gateway's connections."""
    gateway, url = lan.gateway, lan.gateway.url
    shared = token("client", "shared")
    first = await connect_from(lan.client, url, shared)
    others = [await connect_from(lan.client, url, shared)]

    assert await refused_status(lan.client, url, shared) == (
        429,
        b"2 connections with this token are open, the most allowed per token.\n",
    )
    gateway.wait_for_log(
        r"\[WARNING\] Refused a connection from 10\.77\.0\.3: 2 connections with this token are "
        r"open, the most allowed per token \(raise --max-connections-per-token\)"
    )
    others.append(await connect_from(lan.client, url, token("client", "b")))
    assert await refused_status(lan.client, url, token("client", "c")) == (
        429,
        b"3 connections from this address are open, the most allowed per address.\n",
    )
    gateway.wait_for_log(
        r"\[WARNING\] Refused a connection from 10\.77\.0\.3: 3 connections from this address "
        r"are open, the most allowed per address \(raise --max-connections-per-ip\)"
    )
    for name in ("h1", "h2"):
        others.append(await connect_from(lan.homelab, url, token("client", name)))
    assert await refused_status(lan.homelab, url, token("client", "h3")) == (
        503,
        b"5 connections are open, the most this gateway allows.\n",
    )
    gateway.wait_for_log(
        r"\[WARNING\] Refused a connection from 10\.77\.0\.2: 5 connections are open, the most "
        r"this gateway allows \(raise --max-connections\)"
    )
    assert gateway.log().count("Refused a connection from") == 3

    # A closed connection gives its place back under all three caps...
    first_id = await identify(first)
    await first.close()
    gateway.wait_for_log(rf"Connection {re.escape(first_id)} disconnected")
    # ... and so does a handshake that $connect refused.
    assert (await refused_status(lan.client, url, token()[:-4] + "AAAA"))[0] == 401
    others.append(await connect_when_free(lan.client, url, shared))
    for ws in others:
        assert (await request(ws, {"action": "ping"}))["action"] == "pong"
        await ws.close()
