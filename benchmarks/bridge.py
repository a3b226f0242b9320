"""The bridge on a veth pair: setup time, throughput beside raw TCP, daemon memory.

    sudo .venv/bin/python -m benchmarks.bridge [--runs 3] [--megabytes 100]   (from the checkout)

Two network namespaces joined by one veth pair: "home" (10.99.0.1: the signaling gateway,
homelab_server, a TCP echo and a TCP sink service) and "client" (10.99.0.2). Every process
is started as users start it. Phases:

- setup: ``homelab-p2p pipe echo7`` (a tcp:// echo service) started 20 times; the time from
  the process start to the first byte echoed back through it, and the client's negotiation time
  (signaling, ICE, DTLS and the first channel) from its log;
- throughput: N MB through ``homelab-p2p forward`` into the sink service, and the same N MB
  over a plain TCP connection across the same veth, in the same run, with the CPU seconds
  of the daemon and the client;
- memory: the daemon's RSS when idle and with 10 connected peers.

Prints a table and one JSON line. Needs root (network namespaces).
"""

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.profiles import Sampler
from tests.support import SECRET
from tests.support.bridge import (
    EchoService,
    LoggedProcess,
    NamespaceTcpService,
    client_args,
    start_daemon,
    start_forward,
    write_daemon_config,
)
from tests.support.gateway import GatewayProcess
from tests.support.netns import Lab, Namespace, lab, venv_bin

HOME_IP, CLIENT_IP = "10.99.0.1", "10.99.0.2"
SIGNALING = f"ws://{HOME_IP}:8765/prod"
ECHO_PORT, SINK_PORT = 7007, 7008
CHUNK = 256 * 1024


def veth_pair(built: Lab) -> tuple[Namespace, Namespace]:
    home, client = built.host("home"), built.host("client")
    built.wire(home, f"{HOME_IP}/24", client, "veth1", member_end="veth0")
    built.namespaces["client"].run("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "veth1")
    built.allow("10.99.0.0/24")
    return home, client


class Sink(NamespaceTcpService):
    """A TCP service in a namespace that reads and counts, and says when N bytes came."""

    def __init__(self, namespace: Namespace, port: int) -> None:
        super().__init__(namespace, port, host="0.0.0.0")
        self.received = 0
        self.goal = 0
        self.done = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024 * 1024):
                self.received += len(data)
                if self.goal and self.received >= self.goal:
                    self.done.set()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def expect(self, size: int) -> None:
        self.received, self.goal = 0, size
        self.done.clear()


async def send_through(namespace: Namespace, host: str, port: int, sink: Sink, size: int) -> float:
    """Seconds to move ``size`` bytes from ``namespace`` to host:port until the sink has them."""
    sink.expect(size)
    _, writer = await asyncio.open_connection(sock=namespace.socket_connected(host, port))
    block = os.urandom(CHUNK)
    started = time.perf_counter()
    sent = 0
    while sent < size:
        writer.write(block[: min(CHUNK, size - sent)])
        sent += min(CHUNK, size - sent)
        await writer.drain()
    await asyncio.wait_for(sink.done.wait(), 600)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def setup_times(client: Namespace, runs: int) -> dict[str, Any]:
    first_byte, negotiation = [], []
    argv = [venv_bin("homelab-p2p"), "pipe", "echo7", "-v", *client_args(SIGNALING)]
    for _ in range(runs):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *client.command(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(b"x")
        await process.stdin.drain()
        assert await asyncio.wait_for(process.stdout.read(1), 30) == b"x"
        first_byte.append(time.perf_counter() - started)
        process.stdin.close()
        _, stderr = await process.communicate()
        match = re.search(rb"Connected to 'laptop' in ([\d.]+) s", stderr)
        if match:
            negotiation.append(float(match.group(1)))

    def percentiles(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "p50_s": round(statistics.median(ordered), 3),
            "p95_s": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
        }

    return {
        "runs": runs,
        "process_start_to_first_byte": percentiles(first_byte),
        "negotiation": percentiles(negotiation),
    }


async def throughput(
    home: Namespace,
    client: Namespace,
    daemon: LoggedProcess,
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    size = args.megabytes * 1024 * 1024
    sink = Sink(home, SINK_PORT)
    await sink.start()
    forward, port = await start_forward(client, "sink", SIGNALING, workdir / "forward.log")
    bridge, raw, cpu = [], [], []
    try:
        await send_through(
            client, "127.0.0.1", port, sink, 1024 * 1024
        )  # warm up the peer connection
        for _ in range(args.runs):
            daemon_cpu, client_cpu = (
                cpu_seconds(daemon.process.pid),
                cpu_seconds(forward.process.pid),
            )
            seconds = await send_through(client, "127.0.0.1", port, sink, size)
            bridge.append(args.megabytes / seconds)
            cpu.append(
                (
                    (cpu_seconds(daemon.process.pid) - daemon_cpu) / seconds,
                    (cpu_seconds(forward.process.pid) - client_cpu) / seconds,
                )
            )
            raw.append(args.megabytes / await send_through(client, HOME_IP, SINK_PORT, sink, size))
        profile = (
            await profile_transfer(client, port, sink, daemon, forward, workdir, size)
            if args.profile
            else {}
        )
    finally:
        forward.stop()
        await sink.stop()
    bridge_median, raw_median = statistics.median(bridge), statistics.median(raw)
    return {
        "profile": profile,
        "megabytes": args.megabytes,
        "runs": args.runs,
        "forward_mb_s": [round(v, 1) for v in bridge],
        "raw_tcp_mb_s": [round(v, 1) for v in raw],
        "forward_median_mb_s": round(bridge_median, 1),
        "raw_tcp_median_mb_s": round(raw_median, 1),
        "ratio_forward_to_raw": round(bridge_median / raw_median, 4),
        "daemon_cpu_share": round(statistics.median(c[0] for c in cpu), 2),
        "client_cpu_share": round(statistics.median(c[1] for c in cpu), 2),
    }


async def profile_transfer(
    client: Namespace,
    port: int,
    sink: "Sink",
    daemon: LoggedProcess,
    forward: LoggedProcess,
    workdir: Path,
    size: int,
) -> dict[str, dict[str, float]]:
    """One more transfer with py-spy sampling both ends: where the time goes."""
    py_spy = venv_bin("py-spy")
    samplers = {
        "daemon (receiving)": Sampler(daemon.process.pid, workdir / "daemon.prof", py_spy),
        "client (sending)": Sampler(forward.process.pid, workdir / "client.prof", py_spy),
    }
    await asyncio.sleep(0.5)  # py-spy attaches
    await send_through(client, "127.0.0.1", port, sink, size)
    return {name: sampler.stop() for name, sampler in samplers.items()}


async def memory(client: Namespace, daemon: LoggedProcess, workdir: Path) -> dict[str, Any]:
    process = psutil.Process(daemon.process.pid)
    idle = process.memory_info().rss
    forwards = []
    try:
        for n in range(10):
            forward, _ = await start_forward(client, "echo7", SIGNALING, workdir / f"peer{n}.log")
            forwards.append(forward)
        await daemon.logged(r"(?s)(connected over.*){10}")
        with_peers = process.memory_info().rss
    finally:
        for forward in forwards:
            forward.stop()
    return {
        "idle_rss_mb": round(idle / 2**20, 1),
        "ten_peers_rss_mb": round(with_peers / 2**20, 1),
        "per_peer_mb": round((with_peers - idle) / 10 / 2**20, 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    (workdir / "secret").write_bytes(SECRET)
    with lab("b") as built:
        home, client = veth_pair(built)
        gateway = GatewayProcess(
            [
                "--host",
                HOME_IP,
                "--port",
                "8765",
                "--secret-file",
                str(workdir / "secret"),
                "--log-level",
                "INFO",
            ],
            workdir / "gateway.log",
            prefix=home.command([])[:4],
        ).start()
        services = {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}", "sink": f"tcp://127.0.0.1:{SINK_PORT}"}
        config = write_daemon_config(workdir / "daemon.yml", SIGNALING, services, log_level="INFO")
        async with EchoService(home, ECHO_PORT):
            daemon = await start_daemon(home, config, workdir / "daemon.log")
            await asyncio.sleep(1)  # let start-up allocations settle before the idle reading
            result_memory = await memory(client, daemon, workdir)
            result_setup = await setup_times(client, args.setup_runs)
            result_throughput = await throughput(home, client, daemon, workdir, args)
            daemon.stop()
        gateway.stop()
    return {
        "benchmark": "bridge",
        "machine": machine_description(),
        "setup": result_setup,
        "throughput": result_throughput,
        "memory": result_memory,
        "goals": {"setup_p50_s": 0.3, "idle_rss_mb": 80, "per_peer_mb": 3},
    }


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_table(result: dict[str, Any]) -> None:
    setup, flow, mem = result["setup"], result["throughput"], result["memory"]
    print(f"\nbridge benchmark on a veth pair: {result['machine']}\n")
    print(f"setup, {setup['runs']} runs             p50 s    p95 s")
    for name, key in (
        ("process start to first byte", "process_start_to_first_byte"),
        ("negotiation (client log)", "negotiation"),
    ):
        print(f"  {name:<28}{setup[key]['p50_s']:>8}{setup[key]['p95_s']:>9}")
    print(f"\nthroughput, {flow['megabytes']} MB x {flow['runs']}     median MB/s   runs")
    print(f"  homelab-p2p forward       {flow['forward_median_mb_s']:>12}   {flow['forward_mb_s']}")
    print(f"  raw TCP, same veth        {flow['raw_tcp_median_mb_s']:>12}   {flow['raw_tcp_mb_s']}")
    print(f"  ratio forward / raw TCP   {flow['ratio_forward_to_raw']:>12}")
    cores = f"daemon {flow['daemon_cpu_share']}, client {flow['client_cpu_share']}"
    print(f"  CPU (cores busy)          {cores}")
    for side, layers in flow.get("profile", {}).items():
        print(f"\n  where the time goes, {side} (% of busy samples):")
        for layer, share in layers.items():
            print(f"    {share:>5.1f}  {layer}")
    print(
        f"\ndaemon memory: idle {mem['idle_rss_mb']} MB, "
        f"with 10 peers {mem['ten_peers_rss_mb']} MB ({mem['per_peer_mb']} MB per peer)\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (default: 3)")
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--setup-runs", type=int, default=20)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample both ends with py-spy during one more transfer",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks.bridge builds network namespaces: run it as root")
    result = asyncio.run(run(args))
    print_table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
