"""The local gateway under clients that never read: a well-behaved client's latency.

    .venv/bin/python -m benchmarks.hostile_gateway [--seconds 15] [--attackers 16]
        [--size 60000] [--rate 20] [--log-level INFO]   (from the checkout)

One `signaling-gateway` process on 127.0.0.1, started as users start it, with its default
limits. A well-behaved client sends ``--rate`` echo-to-me messages a second (sendSignal to
"me": the handler posts each back through the management API) and times each round trip,
first with nobody else connected (the reference), then while ``--attackers`` slow readers
flood it: connections on one client token that never read their socket (small receive
buffer, one message of queue) and send ``--size``-byte echoes to themselves as fast as the
gateway takes them. The gateway closes each with 1008 once it holds more than
--max-send-buffer unread bytes and drops it when the close times out; the attacker then
connects again, so the flood lasts the whole phase, which is measured from the moment all
attackers are connected. A third phase floods a second gateway started with
``--handlers-per-token 64`` (the attackers' token may then fill the handler workers' queues):
what the per-token share is worth, in the same run. The gateway's CPU is its own and its
handler workers' together (100 % is one core).

Prints a table (round trips, p50/p99/max latency of each phase, their ratio, the gateway's
CPU, what the attackers did) and one JSON line. Goal: p99 under 50 ms while flooded.
Nothing leaves loopback.
"""

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from benchmarks.report import machine_description, print_rows, report
from lab import SECRET, token
from lab.gateway import GatewayProcess
from lab.ws import identify, open_ws, request

GOAL_P99_MS = 50.0
STALL_LIMIT = 60.0
"""Seconds a round trip may take: a gateway that stalls shows as a long round trip."""
CLOSED_FOR_NOT_READING = "with 1008: it does not read its messages"


@dataclass
class Attack:
    """What the attackers did in one flooded phase."""

    connections: int = 0
    refused: int = 0
    messages: int = 0


def summary(latencies: list[float]) -> dict[str, float | int]:
    ordered = sorted(latencies)
    return {
        "round_trips": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def round_trips(ws: ClientConnection, seconds: float, rate: float) -> list[float]:
    """Echo-to-me round trips, one every 1/rate s, for ``seconds``."""
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    next_send = loop.time()
    deadline = next_send + seconds
    while loop.time() < deadline:
        started = time.perf_counter()
        echo = {"action": "sendSignal", "to": "me", "data": len(latencies)}
        reply = await request(ws, echo, within=STALL_LIMIT)
        latencies.append(time.perf_counter() - started)
        if reply.get("data") != len(latencies) - 1:
            raise SystemExit(f"the well-behaved client got {reply!r}, not its echo")
        next_send += 1 / rate
        await asyncio.sleep(max(0.0, next_send - loop.time()))
    return latencies


async def connect_never_reading(url: str, presented: str) -> ClientConnection:
    """A connection that keeps as little unread on its side as it can."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    return await connect(
        f"{url}?token={presented}",
        sock=sock,
        ping_interval=None,
        compression=None,
        max_queue=1,
        open_timeout=10,
    )


async def slow_reader(url: str, presented: str, size: int, attack: Attack) -> None:
    """One attacker: flood echoes without reading; when dropped, connect again. Runs until
    cancelled."""
    message = json.dumps({"action": "sendSignal", "to": "me", "data": "x" * size})
    while True:
        try:
            ws = await connect_never_reading(url, presented)
        except InvalidStatus:  # the token's cap: closing connections still hold places
            attack.refused += 1
            await asyncio.sleep(0.1)
            continue
        attack.connections += 1
        try:
            await identify(ws)  # the last thing it reads
            while True:
                await ws.send(message)
                attack.messages += 1
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass  # the gateway dropped it once its close timed out
        finally:
            ws.transport.abort()


async def connected(attack: Attack, attackers: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while attack.connections < attackers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {attack.connections} attackers connected within {within:g} s")
        await asyncio.sleep(0.01)


def cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of the gateway and its handler workers together."""
    return float(
        sum(
            t.user + t.system for t in map(psutil.Process.cpu_times, [process, *process.children()])
        )
    )


async def phase(
    gateway: GatewayProcess,
    ws: ClientConnection,
    args: argparse.Namespace,
    flooded: bool,
    name: str,
) -> dict[str, Any]:
    process = psutil.Process(gateway.process.pid)
    attack = Attack()
    attackers: list[asyncio.Task[None]] = []
    if flooded:
        presented = token("client", "attacker")
        attackers = [
            asyncio.create_task(slow_reader(gateway.url, presented, args.size, attack))
            for _ in range(args.attackers)
        ]
        await connected(attack, args.attackers)
    closes_before = gateway.log().count(CLOSED_FOR_NOT_READING)
    cpu_before, started = cpu_seconds(process), time.perf_counter()
    try:
        latencies = await round_trips(ws, args.seconds, args.rate)
    finally:
        for task in attackers:
            task.cancel()
        await asyncio.gather(*attackers, return_exceptions=True)
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "phase": name,
        **summary(latencies),
        "gateway_cpu_percent": round(100 * (cpu_seconds(process) - cpu_before) / elapsed, 1),
    }
    if flooded:
        result["attack"] = {
            "connections": attack.connections,
            "refused_handshakes": attack.refused,
            "messages_sent": attack.messages,
            "closed_with_1008": gateway.log().count(CLOSED_FOR_NOT_READING) - closes_before,
        }
    return result


async def phases(
    args: argparse.Namespace, workdir: Path, name: str, extra: list[str], reference: bool
) -> tuple[list[dict[str, Any]], int]:
    """The phases on one gateway process (started with ``extra``), and its tracebacks."""
    secret = workdir / "secret"
    secret.write_bytes(SECRET)
    gateway = GatewayProcess(
        ["--port", "0", "--secret-file", str(secret), "--log-level", args.log_level, *extra],
        workdir / f"gateway-{name}.log",
    ).start()
    results = []
    try:
        ws = await open_ws(gateway.url, token("client", "bystander"))
        await round_trips(ws, 1, args.rate)  # warm-up
        if reference:
            results.append(await phase(gateway, ws, args, flooded=False, name="reference"))
        results.append(await phase(gateway, ws, args, flooded=True, name=name))
        await ws.close()
    finally:
        with contextlib.suppress(AssertionError):
            gateway.stop()
    return results, gateway.log().count("Traceback")


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    shared, tracebacks = await phases(args, workdir, "flooded", [], reference=True)
    unshared, more = await phases(
        args, workdir, "flooded, pool unshared", ["--handlers-per-token", "64"], reference=False
    )
    reference, flooded = shared
    tracebacks += more
    return {
        "benchmark": "hostile_gateway",
        "machine": machine_description(),
        "gateway_log_level": args.log_level,
        "seconds": args.seconds,
        "rate": args.rate,
        "attackers": args.attackers,
        "size": args.size,
        "phases": [reference, flooded, *unshared],
        "ratio": {
            "p50": round(flooded["p50_ms"] / reference["p50_ms"], 1),
            "p99": round(flooded["p99_ms"] / reference["p99_ms"], 1),
            "p99_unshared_to_shared": round(unshared[0]["p99_ms"] / flooded["p99_ms"], 1),
        },
        "gateway_tracebacks": tracebacks,
        "goal": {"p99_ms_flooded": GOAL_P99_MS, "met": flooded["p99_ms"] < GOAL_P99_MS},
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nhostile gateway benchmark: {result['machine']}, gateway log level "
        f"{result['gateway_log_level']}\nwell-behaved client: echo-to-me round trips, "
        f"{result['rate']:g}/s for {result['seconds']:g} s per phase\n"
    )
    columns = [
        ("phase", "phase", 24),
        ("round trips", "round_trips", 12),
        ("p50 ms", "p50_ms", 10),
        ("p99 ms", "p99_ms", 10),
        ("max ms", "max_ms", 10),
        ("CPU %", "gateway_cpu_percent", 8),
    ]
    print_rows(columns, result["phases"])
    ratio = result["ratio"]
    print(f"{'flooded/reference':<24}{'':>12}{ratio['p50']:>9}x{ratio['p99']:>9}x")
    print(f"{'unshared/flooded':<24}{'':>22}{ratio['p99_unshared_to_shared']:>9}x")
    attack = result["phases"][1]["attack"]
    print(
        f"\nattackers: {result['attackers']} at a time on one token, {result['size']}-byte "
        f"echoes, never reading: {attack['connections']} connections, "
        f"{attack['messages_sent']} messages, {attack['closed_with_1008']} closed with 1008, "
        f"{attack['refused_handshakes']} handshakes refused"
    )
    goal = result["goal"]
    verdict = "met" if goal["met"] else "NOT met"
    print(f"goal: p99 under {goal['p99_ms_flooded']:g} ms while flooded: {verdict}")
    print(f"tracebacks in the gateway log: {result['gateway_tracebacks']}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="per phase; the flood fills, is closed and comes back within it (default: 15)",
    )
    parser.add_argument(
        "--attackers", type=int, default=16, help="slow readers at a time (default: 16)"
    )
    parser.add_argument(
        "--size", type=int, default=60000, help="bytes of each flood message's data"
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="round trips per second (default: 20)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING"),
        help="the gateway's log level (default: INFO, as the Ansible role runs it)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = asyncio.run(run(args, Path(workdir)))
    report(result, print_table)


if __name__ == "__main__":
    main()
