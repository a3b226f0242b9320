"""Signaling through the local gateway on loopback: relay rate, relay latency, memory.

    .venv/bin/python -m benchmarks.signaling [--clients 50] [--messages 200] [--idle 1000]
        [--workers 0,2]

One homelab registered as "laptop" and N clients, each sending offers to "laptop" (the
handler resolves the name and posts to it) and getting an answer back by connection id
(one post), all through a `signaling-gateway` process started as users start it, once per
``--workers`` value (its ``--handler-workers``; 0 is the old path: handler threads in the
gateway's process, management API calls over loopback HTTP), one after the other in the
same run. Every message carries its send time; latency is the one-way time from send to
arrival, clients and homelab sharing one clock.

Phases: "saturated" keeps a window of messages in flight per client (the most the gateway
relays); "paced" sends at a fixed total rate below that and shows the latency a lightly
loaded gateway gives; "idle" holds many connections open at once and reads the gateway's
memory (the gateway's own RSS, and the proportional set size of it and its workers
together: forked workers share most of their pages with it). CPU seconds per 1,000
relayed messages in the saturated phase are read for the gateway, its workers and this
benchmark's own clients.

The floor: in the same run, the CPU one ``PostToConnection`` costs alone, made the way a
worker makes it (botocore builds, signs and parses it; the in-process answer, no socket).
Every relay needs one, so with the gateway's and the clients' measured share it bounds the
rate the machine's cores could reach even with a handler that did nothing else. Prints a
table and one JSON line.
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
from signaling_gateway.cli import in_process_client
from signaling_gateway.inprocess import IN_PROCESS_ENDPOINT, InProcessManagementApi
from signaling_gateway.pool import default_worker_count

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
    workdir: Path, log_level: str, connections: int, workers: int
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
            "--handler-workers",
            str(workers),
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


def memory_mb(gateway: psutil.Process) -> tuple[float, float]:
    """The gateway's RSS, and the PSS of it and its workers together (MB)."""
    rss = gateway.memory_info().rss
    pss = sum(p.memory_full_info().pss for p in [gateway, *gateway.children()])
    return rss / 2**20, pss / 2**20


def cpu_seconds(gateway: psutil.Process) -> tuple[float, float, float]:
    """CPU seconds so far: the gateway's process, its workers, this benchmark."""
    own = gateway.cpu_times()
    workers = [p.cpu_times() for p in gateway.children()]
    mine = psutil.Process().cpu_times()
    return (
        own.user + own.system,
        sum(t.user + t.system for t in workers),
        mine.user + mine.system,
    )


async def idle_phase(url: str, pid: int, count: int) -> dict[str, float | int]:
    gateway = psutil.Process(pid)
    before, pss_before = memory_mb(gateway)
    semaphore = asyncio.Semaphore(50)

    async def one(n: int) -> ClientConnection:
        async with semaphore:
            return await open_ws(url, "client", f"idle-{n}")

    sockets = await asyncio.gather(*(one(n) for n in range(count)))
    held = await asyncio.gather(*(identify(ws) for ws in sockets))  # every one answers: all open
    after, pss_after = memory_mb(gateway)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {
        "connections": len(held),
        "rss_before_mb": round(before, 1),
        "rss_mb": round(after, 1),
        "pss_with_workers_before_mb": round(pss_before, 1),
        "pss_with_workers_mb": round(pss_after, 1),
        "kb_per_connection": round((after - before) * 1024 / len(held), 1),
    }


async def run_gateway(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """Every phase against one gateway with ``workers`` handler workers."""
    with tempfile.TemporaryDirectory() as workdir:
        # Every connection comes from 127.0.0.1: room for the idle phase's and the others',
        # with margin for closed ones whose end the gateway has yet to see.
        connections = 2 * (args.idle + args.clients) + 16
        process, url = start_gateway(Path(workdir), args.log_level, connections, workers)
        gateway = psutil.Process(process.pid)
        try:
            homelab = await open_ws(url, "homelab", "laptop")
            token = issue_token(SECRET, "homelab", "laptop", 3600)
            await homelab.send(json.dumps({"action": "register", "name": "laptop", "token": token}))
            assert json.loads(await homelab.recv())["action"] == "registered"
            current: list[Phase] = [Phase("warm-up")]
            homelab_task = asyncio.create_task(homelab_loop(homelab, current))
            await relay_phase(url, current, "warm-up", 5, 20, 4, 0)
            cpu_before = cpu_seconds(gateway)
            saturated = await relay_phase(
                url, current, "saturated", args.clients, args.messages, 4, 0
            )
            cpu = [b - a for a, b in zip(cpu_before, cpu_seconds(gateway), strict=True)]
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
    per_thousand = 1000 / saturated.relayed
    return {
        "workers": workers,
        "relay": [saturated.row(), paced.row()],
        "cpu_s_per_1000": {
            "gateway": round(cpu[0] * per_thousand, 3),
            "workers": round(cpu[1] * per_thousand, 3),
            "benchmark_clients": round(cpu[2] * per_thousand, 3),
        },
        "idle": idle,
    }


def post_cpu_ms(posts: int = 5000) -> float:
    """CPU ms of one PostToConnection as a handler worker makes it, nothing else running."""

    def no_gateway(op: str, args: tuple[Any, ...]) -> Any:
        raise AssertionError(f"a post asked the gateway {op}{args}")

    management = InProcessManagementApi("local", {"bench="}, lambda _id, _data: None, no_gateway)
    client = in_process_client(
        management, SECRET.decode(), IN_PROCESS_ENDPOINT.format(stage="local")
    )
    data = json.dumps({"action": "signal", "type": "offer", "data": "x" * 400}).encode()
    for _ in range(posts // 10):  # botocore loads its parsers and caches on first use
        client.post_to_connection(ConnectionId="bench=", Data=data)
    started = time.process_time()
    for _ in range(posts):
        client.post_to_connection(ConnectionId="bench=", Data=data)
    return (time.process_time() - started) * 1000 / posts


def ceiling_per_second(post_ms: float, cpu_ms_per_relay: dict[str, float]) -> float:
    """The most relays a second the machine's cores allow if a worker did only the post."""
    cores = len(os.sched_getaffinity(0))
    floor = post_ms + cpu_ms_per_relay["gateway"] + cpu_ms_per_relay["benchmark_clients"]
    return round(cores * 1000 / floor)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runs = [await run_gateway(args, workers) for workers in args.workers]
    post_ms = post_cpu_ms()
    for run in runs:
        if run["workers"]:
            run["ceiling_per_second"] = ceiling_per_second(post_ms, run["cpu_s_per_1000"])
    return {
        "benchmark": "signaling",
        "machine": machine_description(),
        "gateway_log_level": args.log_level,
        "clients": args.clients,
        "post_cpu_ms": round(post_ms, 3),
        "runs": runs,
        "goals": {"relayed_per_second": 5000, "p99_ms": 10, "idle_1000_pss_mb": 200},
    }


def _label(workers: int) -> str:
    return "threads (old path)" if workers == 0 else f"{workers} workers"


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nsignaling benchmark: {result['machine']}, gateway log level "
        f"{result['gateway_log_level']}, 1 homelab + {result['clients']} clients\n"
    )
    rows = [
        {"handler": _label(run["workers"]), **row, **run["cpu_s_per_1000"]}
        for run in result["runs"]
        for row in run["relay"]
    ]
    columns = [
        ("handler", "handler", 20),
        ("phase", "phase", 18),
        ("relayed", "relayed", 9),
        ("msgs/s", "per_second", 9),
        ("p50 ms", "p50_ms", 9),
        ("p99 ms", "p99_ms", 9),
        ("CPU s/1000: gateway", "gateway", 21),
        ("workers", "workers", 9),
        ("clients", "benchmark_clients", 9),
    ]
    print_rows(columns, rows)
    print()
    for run in result["runs"]:
        idle = run["idle"]
        print(
            f"idle, {_label(run['workers'])}: {idle['connections']} connections held, gateway "
            f"RSS {idle['rss_mb']} MB (before {idle['rss_before_mb']} MB, "
            f"{idle['kb_per_connection']} KB per connection), PSS with its workers "
            f"{idle['pss_with_workers_mb']} MB (before {idle['pss_with_workers_before_mb']} MB)"
        )
    print()
    for run in result["runs"]:
        if "ceiling_per_second" in run:
            cpu = run["cpu_s_per_1000"]
            print(
                f"floor, {_label(run['workers'])}: one PostToConnection alone costs "
                f"{result['post_cpu_ms']} ms of CPU (botocore, answered in process); with the "
                f"gateway's {cpu['gateway']} and the clients' {cpu['benchmark_clients']} ms a "
                f"relay, {len(os.sched_getaffinity(0))} cores relay at most "
                f"{run['ceiling_per_second']} messages a second, the rest of the handler free"
            )
    print()


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list such as 0,2") from None
    if any(count < 0 for count in counts):
        raise argparse.ArgumentTypeError("worker counts are 0 or more")
    return counts


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
        "--workers",
        type=_worker_counts,
        default=[0, default_worker_count()],
        help="the gateway's --handler-workers, one gateway after the other (default: 0 and "
        "the gateway's default, one per CPU)",
    )
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
