"""The daemon under hostile clients: its memory under floods, a real client's connect time.

    sudo .venv/bin/python -m benchmarks.hostile_daemon [--seconds 300] [--peers 4]
        [--attackers 50] [--runs 5]

The lab of benchmarks/bridge.py (two namespaces on a veth pair; the gateway and the daemon in
"home", clients in "client"); every process started as users start it, no ICE server.

- memory: the daemon's RSS, sampled every second, while ``--peers`` clients each push data
  into a tcp:// service that never reads, for ``--seconds``: first well-behaved clients
  (``homelab-p2p forward``, which respects the SCTP window: the reference), then as many
  stock aiortc senders that ignore it (lab/attacker.py ``flood``). Per phase:
  the peak, the growth over the idle daemon per peer, and the drift (the peak of the last
  third of the phase over the peak of its middle third: a flat line is 0, growth is
  positive). Goal: at most 80 MB + 3 MB per peer, and less than 3 MB of drift.
- connect: ``homelab-p2p pipe echo7`` to its first echoed byte, ``--runs`` times, first with
  nothing else going on (the reference), then with ``--attackers`` signaling connections
  that each hold an offer that parses but can never connect (sent again before every run,
  so they fill every place the daemon has). Goal: the client connects in under 1 s.

Prints a table and one JSON line. Needs root (network namespaces).
"""

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from benchmarks.bridge import percentiles, time_pipe
from benchmarks.report import machine_description, needs_root, report
from benchmarks.veth import HOME_IP, SIGNALING, veth_lab
from lab import credential, credential_file
from lab.bridge import (
    EchoService,
    LoggedProcess,
    NamespaceTcpService,
    start_daemon,
    start_forward,
)
from lab.hostile import next_signal, offer, open_client, signal
from lab.netns import Namespace, venv_bin

ECHO_PORT, SINK_PORT = 7007, 7020
BLOCK = bytes(range(256)) * 256  # 64 KiB
MB = 1024 * 1024
GOALS = {"rss_base_mb": 80, "rss_per_peer_mb": 3, "connect_under_attack_s": 1.0}


class NeverReads(NamespaceTcpService):
    """A tcp:// service that accepts connections and never reads from them."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            writer.transport.abort()


class RssTrace:
    """A process's resident memory, once a second."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.samples: list[float] = []

    async def record(self) -> None:
        while True:
            self.samples.append(self._process.memory_info().rss / MB)
            await asyncio.sleep(1)

    def summary(self, idle_mb: float, peers: int) -> dict[str, float]:
        third = len(self.samples) // 3
        peak = max(self.samples)
        return {
            "peak_mb": round(peak, 1),
            "end_mb": round(self.samples[-1], 1),
            "per_peer_mb": round((peak - idle_mb) / peers, 2),
            # Growth: the last third's peak over the middle third's (flat: 0, growing: > 0).
            "drift_mb": round(
                max(self.samples[2 * third :]) - max(self.samples[third : 2 * third]), 1
            ),
        }


@contextlib.asynccontextmanager
async def tracing(pid: int) -> AsyncIterator[RssTrace]:
    trace = RssTrace(pid)
    task = asyncio.create_task(trace.record())
    try:
        yield trace
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def well_behaved(client: Namespace, workdir: Path, peers: int, seconds: float) -> None:
    """``peers`` forwards, each writing into the sink for ``seconds`` (it takes what it can)."""
    forwards: list[LoggedProcess] = []
    try:
        writers = []
        for n in range(peers):
            forward, port = await start_forward(client, "sink", SIGNALING, workdir / f"ok{n}.log")
            forwards.append(forward)
            _, writer = await asyncio.open_connection(
                sock=client.socket_connected("127.0.0.1", port)
            )
            writers.append(writer)

        async def push(writer: asyncio.StreamWriter) -> None:
            ends = time.monotonic() + seconds
            while time.monotonic() < ends:
                writer.write(BLOCK)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, ends - time.monotonic())):
                        await writer.drain()  # stalls once the window is full: respected

        await asyncio.gather(*(push(writer) for writer in writers))
        for writer in writers:
            writer.transport.abort()
    finally:
        for forward in forwards:
            forward.stop()


async def ignoring_the_window(client: Namespace, workdir: Path, peers: int, seconds: float) -> None:
    """``peers`` stock aiortc senders flooding the sink for ``seconds``."""
    argv = [venv_bin("python"), "-m", "lab.attacker", "flood", SIGNALING]
    options = ["--service", "sink", "--seconds", str(seconds)]
    floods = [
        LoggedProcess(
            client,
            [*argv, str(credential_file(credential("client", f"flood{n}"))), *options],
            workdir / f"flood{n}.log",
        )
        for n in range(peers)
    ]
    for flood in floods:
        status = await asyncio.to_thread(flood.process.wait, seconds + 120)
        if status != 0:
            raise RuntimeError(f"an attacker failed ({status}): {flood.log()[-2000:]}")


async def memory(
    home_daemon: LoggedProcess, client: Namespace, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    pid = home_daemon.process.pid
    idle = psutil.Process(pid).memory_info().rss / MB
    phases: dict[str, Callable[[], Awaitable[None]]] = {
        "well_behaved": lambda: well_behaved(client, workdir, args.peers, args.seconds),
        "ignoring_the_window": lambda: ignoring_the_window(
            client, workdir, args.peers, args.seconds
        ),
    }
    result: dict[str, Any] = {
        "idle_mb": round(idle, 1),
        "peers": args.peers,
        "seconds": args.seconds,
    }
    for name, phase in phases.items():
        async with tracing(pid) as trace:
            await phase()
        result[name] = trace.summary(idle, args.peers)
    attacked, reference = result["ignoring_the_window"], result["well_behaved"]
    result["peak_ratio_to_well_behaved"] = round(attacked["peak_mb"] / reference["peak_mb"], 2)
    limit = GOALS["rss_base_mb"] + GOALS["rss_per_peer_mb"] * args.peers
    result["goal_mb"] = limit
    result["goal_met"] = attacked["peak_mb"] <= limit and attacked["drift_mb"] < 3
    return result


async def hold_junk_offers(clients: list[Any]) -> None:
    """Each attacker (re)sends an offer that can never connect, and waits for its answer."""
    await asyncio.gather(*(signal(ws, offer()) for ws in clients))
    await asyncio.gather(*(next_signal(ws) for ws in clients))


async def connect_times(
    client: Namespace, runs: int, before: Callable[[], Awaitable[None]]
) -> list[float]:
    times = []
    for _ in range(runs):
        await before()
        first_byte, _ = await time_pipe(client)
        times.append(first_byte)
    return times


async def connecting(client: Namespace, args: argparse.Namespace) -> dict[str, Any]:
    async def nothing() -> None:
        return None

    reference = await connect_times(client, args.runs, nothing)
    attackers = [await open_client(client, HOME_IP, name=f"junk{n}") for n in range(args.attackers)]
    try:
        attacked = await connect_times(client, args.runs, lambda: hold_junk_offers(attackers))
    finally:
        for ws in attackers:
            await ws.close()
    result = {
        "attackers": args.attackers,
        "runs": args.runs,
        "reference": percentiles(reference) | {"max_s": round(max(reference), 3)},
        "under_attack": percentiles(attacked) | {"max_s": round(max(attacked), 3)},
    }
    result["p50_ratio"] = round(statistics.median(attacked) / statistics.median(reference), 2)
    result["goal_met"] = max(attacked) < GOALS["connect_under_attack_s"]
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with veth_lab("h", "bench-hostile-", ECHO_PORT, SINK_PORT) as built:
        home, client, workdir = built.home, built.client, built.workdir
        async with EchoService(home, ECHO_PORT), NeverReads(home, SINK_PORT):
            daemon = await start_daemon(home, built.daemon_config, workdir / "daemon.log")
            try:
                await asyncio.sleep(2)  # start-up allocations settle before the idle reading
                result_memory = await memory(daemon, client, workdir, args)
                result_connect = await connecting(client, args)
            finally:
                daemon.stop()
    return {
        "benchmark": "hostile_daemon",
        "machine": machine_description(),
        "logs": str(workdir),
        "memory": result_memory,
        "connect": result_connect,
        "goals": GOALS,
    }


def print_table(result: dict[str, Any]) -> None:
    mem, conn = result["memory"], result["connect"]
    print(f"\nthe daemon under hostile clients: {result['machine']}\n")
    print(
        f"memory: {mem['peers']} peers pushing into a service that never reads, "
        f"{mem['seconds']:g} s each; idle daemon {mem['idle_mb']} MB"
    )
    print(f"  {'':<34}{'peak MB':>9}{'end MB':>8}{'MB/peer':>9}{'drift MB':>10}")
    for name, label in (
        ("well_behaved", "well-behaved (window respected)"),
        ("ignoring_the_window", "stock aiortc (window ignored)"),
    ):
        row = mem[name]
        print(
            f"  {label:<34}{row['peak_mb']:>9}{row['end_mb']:>8}{row['per_peer_mb']:>9}"
            f"{row['drift_mb']:>10}"
        )
    print(
        f"  peak, window ignored / respected: {mem['peak_ratio_to_well_behaved']}; goal: at most "
        f"{mem['goal_mb']} MB and flat: {'met' if mem['goal_met'] else 'NOT met'}"
    )
    print(f"\nconnect: homelab-p2p pipe to its first echoed byte, {conn['runs']} runs")
    print(f"  {'':<34}{'p50 s':>8}{'p95 s':>8}{'max s':>8}")
    for name, label in (
        ("reference", "nothing else going on"),
        ("under_attack", f"{conn['attackers']} attackers holding offers"),
    ):
        row = conn[name]
        print(f"  {label:<34}{row['p50_s']:>8}{row['p95_s']:>8}{row['max_s']:>8}")
    print(
        f"  p50 under attack / reference: {conn['p50_ratio']}; goal: every run under "
        f"{GOALS['connect_under_attack_s']:g} s: {'met' if conn['goal_met'] else 'NOT met'}"
    )
    print(f"logs: {result['logs']}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="per memory phase (300)")
    parser.add_argument("--peers", type=int, default=4, help="clients per memory phase (4)")
    parser.add_argument("--attackers", type=int, default=50, help="junk offers held (50)")
    parser.add_argument("--runs", type=int, default=5, help="connections timed per phase (5)")
    args = parser.parse_args()
    needs_root("benchmarks.hostile_daemon")
    report(asyncio.run(run(args)), print_table)


if __name__ == "__main__":
    main()
