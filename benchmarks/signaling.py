"""Signaling through the local gateway on loopback: relay rate, relay latency, memory.

    .venv/bin/python benchmarks/signaling.py [--clients 50] [--messages 200] [--idle 1000]

One homelab registered as "laptop" and N clients, each sending offers to "laptop" (the
handler resolves the name, checks the homelab with GetConnection and posts to it) and
getting an answer back by connection id (one post), all through a `signaling-gateway`
process started as users start it. Every message carries its send time; latency is the
one-way time from send to arrival, clients and homelab sharing one clock.

Phases: "saturated" keeps a window of messages in flight per client (the most the gateway
relays); "paced" sends at a fixed total rate below that and shows the latency a lightly
loaded gateway gives; "idle" holds many connections open at once and reads the gateway's
resident memory. Prints a table and one JSON line.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.report import machine_description, print_rows, report
from p2p_protocol.tokens import issue_token

SECRET = os.urandom(32).hex().encode()
BIN = Path(sys.executable).parent


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def relayed(self) -> int:
        return len(self.latencies)

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "phase": self.name,
            "relayed": self.relayed,
            "per_second": round(self.relayed / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else 0.0,
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2) if ordered else 0.0,
        }


def start_gateway(
    workdir: Path, log_level: str, connections: int
) -> tuple[subprocess.Popen[str], str]:
    """The gateway, without rate limit, taking ``connections`` at once from this host."""
    secret = workdir / "secret"
    secret.write_bytes(SECRET)
    process = subprocess.Popen(
        [
            str(BIN / "signaling-gateway"),
            "--port",
            "0",
            "--secret-file",
            str(secret),
            "--rate-limit",
            "0",
            "--max-connections",
            str(connections),
            "--max-connections-per-ip",
            str(connections),
            "--log-level",
            log_level,
        ],
        stdout=subprocess.PIPE,
        stderr=(workdir / "gateway.log").open("w"),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("Serving "):
        raise SystemExit(
            f"the gateway did not start: {line!r}\n{(workdir / 'gateway.log').read_text()}"
        )
    return process, line.split()[1]


async def open_ws(url: str, role: str, name: str) -> ClientConnection:
    token = issue_token(SECRET, role, name, 3600, homelabs=("laptop",) if role == "client" else ())
    return await connect(
        f"{url}?token={token}", ping_interval=None, compression=None, max_queue=None
    )


async def identify(ws: ClientConnection) -> str:
    await ws.send(json.dumps({"action": "sendSignal", "to": "me", "data": "identify"}))
    return str(json.loads(await ws.recv())["data"])


async def homelab_loop(ws: ClientConnection, phase_of: list[Phase]) -> None:
    """Answer every offer to its sender, recording the offer's latency."""
    async for raw in ws:
        arrived = time.perf_counter()
        message = json.loads(raw)
        sent = message["data"]["t"]
        phase_of[0].latencies.append(arrived - sent)
        answer = {
            "action": "sendSignal",
            "to": message["from"],
            "data": {"t": time.perf_counter()},
            "ticket": message.get("ticket"),  # signaling's leave to answer this client
        }
        await ws.send(json.dumps(answer))


async def client_loop(
    ws: ClientConnection, count: int, window: int, interval: float, offset: float, phase: Phase
) -> None:
    """Send ``count`` offers (``window`` unanswered at most), one per ``interval`` s."""
    in_flight = asyncio.Semaphore(window)

    async def receive() -> None:
        for _ in range(count):
            message = json.loads(await ws.recv())
            phase.latencies.append(time.perf_counter() - message["data"]["t"])
            in_flight.release()

    receiver = asyncio.create_task(receive())
    next_send = time.perf_counter() + offset
    for _ in range(count):
        await in_flight.acquire()
        if interval:
            next_send += interval
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
        offer = {
            "action": "sendSignal",
            "to": "laptop",
            "data": {"type": "offer", "t": time.perf_counter()},
        }
        await ws.send(json.dumps(offer))
    await receiver


async def relay_phase(
    url: str,
    homelab_phase: list[Phase],
    name: str,
    clients: int,
    messages: int,
    window: int,
    rate: float,
) -> Phase:
    phase = Phase(name)
    homelab_phase[0] = phase
    sockets = [await open_ws(url, "client", f"bench-{n}") for n in range(clients)]
    interval = clients / rate if rate else 0.0
    started = time.perf_counter()
    # Paced clients start staggered, so the total rate is even rather than 50 at once.
    await asyncio.gather(
        *(
            client_loop(ws, messages, window, interval, n * interval / clients, phase)
            for n, ws in enumerate(sockets)
        )
    )
    phase.elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))
    return phase


async def idle_phase(url: str, pid: int, count: int) -> dict[str, float | int]:
    gateway = psutil.Process(pid)
    before = gateway.memory_info().rss
    semaphore = asyncio.Semaphore(50)

    async def one(n: int) -> ClientConnection:
        async with semaphore:
            return await open_ws(url, "client", f"idle-{n}")

    sockets = await asyncio.gather(*(one(n) for n in range(count)))
    held = await asyncio.gather(*(identify(ws) for ws in sockets))  # every one answers: all open
    after = gateway.memory_info().rss
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {
        "connections": len(held),
        "rss_before_mb": round(before / 2**20, 1),
        "rss_mb": round(after / 2**20, 1),
        "kb_per_connection": round((after - before) / len(held) / 1024, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as workdir:
        # Every connection comes from 127.0.0.1: room for the idle phase's and the others',
        # with margin for closed ones whose end the gateway has yet to see.
        connections = 2 * (args.idle + args.clients) + 16
        process, url = start_gateway(Path(workdir), args.log_level, connections)
        try:
            homelab = await open_ws(url, "homelab", "laptop")
            token = issue_token(SECRET, "homelab", "laptop", 3600)
            await homelab.send(json.dumps({"action": "register", "name": "laptop", "token": token}))
            assert json.loads(await homelab.recv())["action"] == "registered"
            current: list[Phase] = [Phase("warm-up")]
            homelab_task = asyncio.create_task(homelab_loop(homelab, current))
            await relay_phase(url, current, "warm-up", 5, 20, 4, 0)
            saturated = await relay_phase(
                url, current, "saturated", args.clients, args.messages, 4, 0
            )
            # Each offer is relayed twice (offer in, answer back): half the saturated relay rate
            # is a quarter of it in offers.
            rate = args.paced_rate or max(25.0, 0.25 * saturated.relayed / saturated.elapsed)
            paced = await relay_phase(
                url,
                current,
                f"paced at {2 * rate:.0f}/s",
                args.clients,
                max(10, args.messages // 4),
                1000,
                rate,
            )
            homelab_task.cancel()
            await homelab.close()
            idle = await idle_phase(url, process.pid, args.idle)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "benchmark": "signaling",
        "machine": machine_description(),
        "gateway_log_level": args.log_level,
        "clients": args.clients,
        "relay": [saturated.row(), paced.row()],
        "idle": idle,
        "goals": {"relayed_per_second": 5000, "p99_ms": 10, "idle_1000_rss_mb": 200},
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nsignaling benchmark: {result['machine']}, gateway log level "
        f"{result['gateway_log_level']}, 1 homelab + {result['clients']} clients\n"
    )
    columns = [
        ("phase", "phase", 22),
        ("relayed", "relayed", 10),
        ("msgs/s", "per_second", 10),
        ("p50 ms", "p50_ms", 10),
        ("p99 ms", "p99_ms", 10),
    ]
    print_rows(columns, result["relay"])
    idle = result["idle"]
    print(
        f"\nidle: {idle['connections']} connections held, gateway RSS {idle['rss_mb']} MB "
        f"(before {idle['rss_before_mb']} MB, {idle['kb_per_connection']} KB per connection)\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--messages", type=int, default=200, help="offers per client in the saturated phase"
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=0.0,
        help="offers/s in the paced phase (default: half the saturated relay rate)",
    )
    parser.add_argument("--idle", type=int, default=1000, help="connections held in the idle phase")
    parser.add_argument(
        "--log-level",
        default="DEBUG",
        choices=("DEBUG", "INFO", "WARNING"),
        help="the gateway's log level (DEBUG is its default)",
    )
    result = asyncio.run(run(parser.parse_args()))
    report(result, print_table)


if __name__ == "__main__":
    main()
