"""The bridge on a veth pair: setup time, throughput per data path beside raw TCP, memory.

    sudo .venv/bin/python -m benchmarks.bridge [--runs 3] [--megabytes 100] [--setup-runs 20]
        [--modes standard,fast-rfc,...] [--profile [--profile-mode fast-rfc]]   (from the checkout)

Two network namespaces joined by one veth pair: "home" (10.99.0.1: the signaling gateway,
homelab_server, a TCP echo and a TCP sink service) and "client" (10.99.0.2). Every process
is started as users start it, and nothing leaves the lab (no ICE server anywhere). Phases:

- memory: the daemon's RSS when idle and with 10 connected peers;
- setup: ``homelab-p2p pipe echo7`` (a tcp:// echo service) started 20 times; the time from
  the process start to the first byte echoed back through it, and the client's negotiation time
  (signaling, ICE, DTLS and the first channel) from its log;
- throughput: ``--megabytes`` MB into the sink service, ``--runs`` times, in each mode of
  ``--modes`` (all by default), one after the other:

  - ``standard``: stock aiortc, ``data_path: standard`` on both ends;
  - ``fast-rfc``: the fast data path acknowledging as RFC 9260 says (``data_path: fast``,
    ``ack_policy: rfc``: the default);
  - ``fast-aggressive``: the fast path with ``ack_policy: aggressive`` on both ends;
  - ``raw-tcp``: a plain TCP connection across the same veth;
  - ``chromium`` (where ``chromium`` is on PATH): headless Chromium in "client" sending
    through frontend/wss-webrtc.js (16 KiB messages with backpressure on one data channel)
    to the daemon on its default path, timed until the sink has every byte.

  Each bridge mode gets a daemon (its own configuration file) and a ``homelab-p2p forward``
  (its own flags) started for it and stopped after it; both ends' logs must name the data
  path asked for. Per mode: MB/s of every run and their median, the CPU of each side (cores
  busy during the transfer: the daemon, and the client process, or all of Chromium's
  processes, or for raw TCP this process, which is both ends), and the median's ratio to
  stock aiortc's and to raw TCP's. ``--profile`` samples both ends with py-spy during one
  more transfer in ``--profile-mode`` (fast-rfc unless told).

The memory and setup phases run on the default data path (the daemon's configuration and
the client's flags say nothing about it). A mode that fails is reported as failed and the
others still run; the processes' logs stay in the directory the table names.

Prints a table and one JSON line (per-mode results under "throughput", keyed by mode).
Needs root (network namespaces).
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.profiles import Sampler
from benchmarks.report import machine_description, needs_root, report
from benchmarks.veth import HOME_IP, SIGNALING, veth_lab
from lab import default_client_file
from lab.bridge import (
    EchoService,
    LoggedProcess,
    NamespaceTcpService,
    client_args,
    first_echoed_byte,
    start_daemon,
    start_forward,
    write_daemon_config,
)
from lab.chromium import Chromium
from lab.netns import Namespace, venv_bin

ECHO_PORT, SINK_PORT = 7007, 7008
CHUNK = 256 * 1024
MB = 1024 * 1024
STALL_S = 60
"""A transfer fails when the sink has received nothing more for this long."""


@dataclass(frozen=True)
class Mode:
    """One row of the throughput table."""

    label: str
    daemon_config: dict[str, str] = field(default_factory=dict)
    """Keys added to the daemon's configuration file."""
    client_flags: tuple[str, ...] = ()
    """Flags added to ``homelab-p2p forward``."""
    data_path: str = ""
    """What each bridge end must log as its ``data path: ...``; empty where none runs."""
    safe: bool = True
    """Bridge ends that acknowledge as RFC 9260 says: counts towards the "best safe" goal."""


MODES: dict[str, Mode] = {
    "standard": Mode(
        "stock aiortc",
        {"data_path": "standard"},
        ("--data-path", "standard"),
        "standard (aiortc's own)",
    ),
    "fast-rfc": Mode(
        "fast path, RFC acks",
        {"data_path": "fast", "ack_policy": "rfc"},
        ("--data-path", "fast", "--ack-policy", "rfc"),
        "fast, rfc acknowledgements",
    ),
    "fast-aggressive": Mode(
        "fast path, aggressive acks",
        {"data_path": "fast", "ack_policy": "aggressive"},
        ("--data-path", "fast", "--ack-policy", "aggressive"),
        "fast, aggressive acknowledgements",
        safe=False,
    ),
    "raw-tcp": Mode("raw TCP, same veth", safe=False),
    # The daemon on its default data path: fast, rfc acknowledgements.
    "chromium": Mode("Chromium to the daemon", data_path="fast, rfc acknowledgements"),
}
BRIDGE_MODES = ("standard", "fast-rfc", "fast-aggressive")
CLIENT_SIDE = {
    "raw-tcp": "this process (sender and sink)",
    "chromium": "Chromium, all its processes",
}
GOALS = {"setup_p50_s": 0.3, "idle_rss_mb": 80, "per_peer_mb": 3}
THROUGHPUT_GOALS = {"fast_rfc_median_mb_s": 28, "best_safe_median_mb_s": 40}


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


async def until_received(sink: Sink, check: Callable[[], Awaitable[None]]) -> None:
    """Until the sink has its goal; ``check`` (every second) raises if the sender failed."""
    last, progressed = sink.received, time.monotonic()
    while not sink.done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sink.done.wait(), 1)
            return
        await check()
        if sink.received != last:
            last, progressed = sink.received, time.monotonic()
        elif time.monotonic() - progressed > STALL_S:
            raise RuntimeError(
                f"the transfer stalled: the sink has had {sink.received} of {sink.goal} bytes "
                f"for {STALL_S} s"
            )


async def send_through(namespace: Namespace, host: str, port: int, sink: Sink, size: int) -> float:
    """Seconds to move ``size`` bytes from ``namespace`` to host:port until the sink has them."""
    sink.expect(size)
    _, writer = await asyncio.open_connection(sock=namespace.socket_connected(host, port))
    block = os.urandom(CHUNK)

    async def send() -> None:
        sent = 0
        while sent < size:
            writer.write(block[: min(CHUNK, size - sent)])
            sent += min(CHUNK, size - sent)
            await writer.drain()

    async def check() -> None:
        if sender.done():
            sender.result()  # raises what stopped the sender

    started = time.perf_counter()
    sender = asyncio.create_task(send())
    try:
        await until_received(sink, check)
        elapsed = time.perf_counter() - started
        await sender
    finally:
        sender.cancel()
        writer.close()
    return elapsed


CpuProbe = Callable[[], dict[int, float]]
"""CPU seconds so far of each process of one side, by pid."""


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def process_cpu(pid: int) -> CpuProbe:
    return lambda: {pid: cpu_seconds(pid)}


def process_tree_cpu(pid: int) -> CpuProbe:
    """The process and all its descendants (those alive when probed)."""

    def probe() -> dict[int, float]:
        root = psutil.Process(pid)
        seconds = {}
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                seconds[process.pid] = float(times.user + times.system)
        return seconds

    return probe


def busy_cores(before: dict[int, float], after: dict[int, float], seconds: float) -> float:
    return sum(used - before.get(pid, 0.0) for pid, used in after.items()) / seconds


async def timed_runs(
    args: argparse.Namespace,
    transfer: Callable[[int], Awaitable[float]],
    sides: dict[str, CpuProbe],
) -> dict[str, Any]:
    """A 1 MB warm-up, then ``--runs`` transfers of ``--megabytes``: MB/s and CPU per side."""
    await transfer(MB)
    rates: list[float] = []
    cores: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.runs):
        before = {side: probe() for side, probe in sides.items()}
        seconds = await transfer(args.megabytes * MB)
        for side, probe in sides.items():
            cores[side].append(busy_cores(before[side], probe(), seconds))
        rates.append(args.megabytes / seconds)
    return {
        "mb_s": [round(rate, 1) for rate in rates],
        "median_mb_s": round(statistics.median(rates), 1),
        "cpu_cores": {
            "daemon": round(statistics.median(cores["daemon"]), 2) if "daemon" in cores else None,
            "client": round(statistics.median(cores["client"]), 2),
        },
    }


@dataclass
class Bench:
    """The lab's pieces that every throughput mode uses."""

    home: Namespace
    client: Namespace
    workdir: Path
    services: dict[str, str]
    sink: Sink
    args: argparse.Namespace

    async def start_daemon(self, mode: str) -> LoggedProcess:
        config = write_daemon_config(
            self.workdir / f"daemon-{mode}.yml",
            SIGNALING,
            self.services,
            log_level="INFO",
            **MODES[mode].daemon_config,
        )
        return await start_daemon(self.home, config, self.workdir / f"daemon-{mode}.log")


def logged_data_path(process: LoggedProcess) -> str | None:
    found = re.findall(r"data path: ([^;\n]+)", process.log())
    return found[-1].strip() if found else None


def data_path_check(mode: str, ends: dict[str, str | None]) -> dict[str, Any]:
    """What each end logged as its data path, and a warning unless it is the mode's."""
    wanted = MODES[mode].data_path
    checked: dict[str, Any] = {"data_path": ends}
    wrong = [f"{end} logged {logged!r}" for end, logged in ends.items() if logged != wanted]
    if wrong:
        checked["warning"] = f"expected data path {wanted!r}, but " + ", ".join(wrong)
    return checked


async def bridge_mode(bench: Bench, mode: str) -> dict[str, Any]:
    """``homelab-p2p forward`` to a daemon, both with the mode's data path."""
    daemon = await bench.start_daemon(mode)
    try:
        forward, port = await start_forward(
            bench.client,
            "sink",
            SIGNALING,
            bench.workdir / f"forward-{mode}.log",
            *MODES[mode].client_flags,
        )
        try:

            def transfer(size: int) -> Awaitable[float]:
                return send_through(bench.client, "127.0.0.1", port, bench.sink, size)

            sides = {
                "daemon": process_cpu(daemon.process.pid),
                "client": process_cpu(forward.process.pid),
            }
            result = await timed_runs(bench.args, transfer, sides)
            ends = {"daemon": logged_data_path(daemon), "client": logged_data_path(forward)}
            result |= data_path_check(mode, ends)
            if bench.args.profile and bench.args.profile_mode == mode:
                result["profile"] = await profile_transfer(
                    transfer, daemon, forward, bench.workdir, bench.args.megabytes * MB
                )
        finally:
            forward.stop()
    finally:
        daemon.stop()
    return result


async def raw_tcp_mode(bench: Bench) -> dict[str, Any]:
    def transfer(size: int) -> Awaitable[float]:
        return send_through(bench.client, HOME_IP, SINK_PORT, bench.sink, size)

    return await timed_runs(bench.args, transfer, {"client": process_cpu(os.getpid())})


def connect_expression() -> str:
    """frontend/wss-webrtc.js's connect() as the page calls it, with the lab's client
    credential (its signaling token included); no ICE server at all."""
    options = {"url": SIGNALING, "credential": default_client_file().read_text(), "iceServers": []}
    return f"""(async () => {{
      const {{ connect }} = await import('/wss-webrtc.js');
      window.bridge = await connect({json.dumps(options)});
      return bridge.state;
    }})()"""


OPEN_SINK = """(async () => {
  window.sinkChannel = await bridge.openChannel('sink');
  return sinkChannel.readyState;
})()"""

# Starts sending and returns at once; Python times until the sink has every byte, and reads
# window.sendState to learn of a failure.
START_SENDING = """((size) => {
  const channel = window.sinkChannel;
  const block = new Uint8Array(16 * 1024);
  crypto.getRandomValues(block);
  const state = (window.sendState = { sent: 0, error: null });
  channel.bufferedAmountLowThreshold = 256 * 1024;
  const drained = () => new Promise((resolve, reject) => {
    const closed = () => reject(new Error(`the channel closed after ${state.sent} bytes`));
    channel.addEventListener('close', closed, { once: true });
    channel.addEventListener('bufferedamountlow', () => {
      channel.removeEventListener('close', closed);
      resolve();
    }, { once: true });
  });
  (async () => {
    while (state.sent < size) {
      if (channel.bufferedAmount > 1024 * 1024) await drained();
      const length = Math.min(block.byteLength, size - state.sent);
      channel.send(length === block.byteLength ? block.buffer : block.buffer.slice(0, length));
      state.sent += length;
    }
  })().catch((error) => { state.error = String(error); });
  return true;
})(%d)"""


async def chromium_mode(bench: Bench) -> dict[str, Any]:
    """Chromium in "client" sends over one data channel per run to the daemon's sink."""
    # Chromium gathers host candidates only when its namespace has a default route.
    bench.client.run("ip", "route", "add", "default", "via", HOME_IP)
    daemon = await bench.start_daemon("chromium")
    browser_dir = bench.workdir / "chromium"
    browser_dir.mkdir(exist_ok=True)
    # The page is served over http:// from the lab's address: WebCrypto needs it treated as secure.
    browser = Chromium(bench.client, browser_dir, secure_origins=[f"http://{HOME_IP}:8765"])
    try:
        state = await connected_page(browser)
        # The Popen's pid is Chromium's browser process (ip netns exec, bash and Debian's
        # wrapper script each exec the next); its renderer, GPU and network service are its
        # descendants.
        sides = {
            "daemon": process_cpu(daemon.process.pid),
            "client": process_tree_cpu(browser.pid),
        }
        result = await timed_runs(bench.args, page_transfer(browser, bench.sink), sides)
        result["pair_type"] = state.get("pairType")
        result |= data_path_check("chromium", {"daemon": logged_data_path(daemon)})
        result["chromium"] = psutil.Process(browser.pid).exe()
    except Exception as exc:
        console = "\n".join(browser.console[-10:])
        raise RuntimeError(f"{exc}\nlast console lines of the page:\n{console}") from exc
    finally:
        await browser.stop()
        daemon.stop()
    return result


async def connected_page(browser: Chromium) -> dict[str, Any]:
    """Chromium started on the demo page and connected to the daemon: the bridge's state."""
    await browser.start()
    await browser.goto(f"http://{HOME_IP}:8765/")
    state: dict[str, Any] = await browser.evaluate(connect_expression())
    if state.get("connection") != "connected":
        raise RuntimeError(f"the page did not connect: {state}")
    return state


def page_transfer(browser: Chromium, sink: Sink) -> Callable[[int], Awaitable[float]]:
    """Timed transfers from the page, each over a new channel, until the sink has every byte."""

    async def transfer(size: int) -> float:
        sink.expect(size)
        opened = await browser.evaluate(OPEN_SINK)
        if opened != "open":
            raise RuntimeError(f"the sink channel is {opened!r}, not open")

        async def check() -> None:
            sending = await browser.evaluate("window.sendState")
            if sending["error"]:
                raise RuntimeError(f"the page stopped sending: {sending['error']}")

        started = time.perf_counter()
        await browser.evaluate(START_SENDING % size)
        await until_received(sink, check)
        elapsed = time.perf_counter() - started
        await browser.evaluate("sinkChannel.close()")
        return elapsed

    return transfer


async def run_mode(bench: Bench, mode: str) -> dict[str, Any]:
    """One mode's result, or why it failed or was skipped; never raises (but interrupts)."""
    entry: dict[str, Any] = {"label": MODES[mode].label}
    if mode == "chromium" and shutil.which("chromium") is None:
        return entry | {"skipped": "chromium is not on PATH"}
    print(f"throughput: {mode} ...", flush=True)
    try:
        if mode in BRIDGE_MODES:
            entry |= await bridge_mode(bench, mode)
        elif mode == "raw-tcp":
            entry |= await raw_tcp_mode(bench)
        else:
            entry |= await chromium_mode(bench)
    except Exception as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        entry["error"] = "\n".join(
            [f"{type(exc).__name__}: {lines[0] if lines else ''}"]
            + [f"    {line}" for line in lines[1:][-8:]]
        )
    entry["client_side"] = CLIENT_SIDE.get(mode, "homelab-p2p forward")
    return entry


def with_ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def median(mode: str) -> float | None:
        value = results.get(mode, {}).get("median_mb_s")
        return float(value) if value else None

    stock, raw = median("standard"), median("raw-tcp")
    for entry in results.values():
        if "median_mb_s" in entry:
            entry["ratio_to_stock"] = round(entry["median_mb_s"] / stock, 2) if stock else None
            entry["ratio_to_raw_tcp"] = round(entry["median_mb_s"] / raw, 4) if raw else None
    return results


def goal_results(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The throughput goals, against this run (None where the mode did not run)."""
    fast_rfc = results.get("fast-rfc", {}).get("median_mb_s")
    safe = {
        mode: entry["median_mb_s"]
        for mode, entry in results.items()
        if MODES[mode].safe and "median_mb_s" in entry
    }
    best = max(safe, key=lambda mode: safe[mode]) if safe else None
    return {
        "fast_rfc_median_mb_s": fast_rfc,
        "fast_rfc_met": None
        if fast_rfc is None
        else fast_rfc >= THROUGHPUT_GOALS["fast_rfc_median_mb_s"],
        "best_safe_mode": best,
        "best_safe_median_mb_s": safe[best] if best else None,
        "best_safe_met": None
        if best is None
        else safe[best] >= THROUGHPUT_GOALS["best_safe_median_mb_s"],
    }


async def throughput(
    home: Namespace,
    client: Namespace,
    workdir: Path,
    services: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    sink = Sink(home, SINK_PORT)
    await sink.start()
    bench = Bench(home, client, workdir, services, sink, args)
    try:
        results = {mode: await run_mode(bench, mode) for mode in MODES if mode in args.modes}
    finally:
        await sink.stop()
    return with_ratios(results)


async def profile_transfer(
    transfer: Callable[[int], Awaitable[float]],
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
    await transfer(size)
    return {name: sampler.stop() for name, sampler in samplers.items()}


async def time_pipe(client: Namespace) -> tuple[float, float | None]:
    """``homelab-p2p pipe echo7`` once: (process start to first byte echoed, negotiation s).

    The negotiation (signaling, ICE, DTLS and the first channel) is the client's own figure,
    from its log; None if it did not log one.
    """
    argv = [venv_bin("homelab-p2p"), "pipe", "echo7", "-v", "--no-agent"]
    first_byte, stderr = await first_echoed_byte(client, [*argv, *client_args(SIGNALING)])
    match = re.search(rb"Connected to 'laptop' in ([\d.]+) s", stderr)
    return first_byte, float(match.group(1)) if match else None


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
    }


async def setup_times(client: Namespace, runs: int) -> dict[str, Any]:
    first_byte, negotiation = [], []
    for _ in range(runs):
        first, negotiated = await time_pipe(client)
        first_byte.append(first)
        if negotiated is not None:
            negotiation.append(negotiated)
    return {
        "runs": runs,
        "process_start_to_first_byte": percentiles(first_byte),
        "negotiation": percentiles(negotiation),
    }


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
    # Memory and setup on the default data path: no data_path or ack_policy anywhere.
    with veth_lab("b", "bench-bridge-", ECHO_PORT, SINK_PORT) as built:
        home, client, workdir = built.home, built.client, built.workdir
        async with EchoService(home, ECHO_PORT):
            daemon = await start_daemon(home, built.daemon_config, workdir / "daemon.log")
            try:
                await asyncio.sleep(1)  # let start-up allocations settle before the idle reading
                result_memory = await memory(client, daemon, workdir)
                result_setup = await setup_times(client, args.setup_runs)
            finally:
                daemon.stop()
            result_throughput = await throughput(home, client, workdir, built.services, args)
    return {
        "benchmark": "bridge",
        "machine": machine_description(),
        "logs": str(workdir),
        "setup": result_setup,
        "transfer": {"megabytes": args.megabytes, "runs": args.runs, "modes": args.modes},
        "throughput": result_throughput,
        "memory": result_memory,
        "goals": GOALS
        | THROUGHPUT_GOALS
        | {"best_safe_modes": [mode for mode, spec in MODES.items() if spec.safe]},
        "throughput_goals": goal_results(result_throughput),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\nbridge benchmark on a veth pair: {result['machine']}\n")
    print_setup(result["setup"])
    problems = print_throughput(result["throughput"], result["transfer"])
    print_goals(result["goals"], result["throughput_goals"])
    for problem in problems:
        print(f"  {problem}")
    print_profiles(result["throughput"])
    mem = result["memory"]
    print(
        f"\ndaemon memory: idle {mem['idle_rss_mb']} MB, "
        f"with 10 peers {mem['ten_peers_rss_mb']} MB ({mem['per_peer_mb']} MB per peer)"
    )
    print(f"logs: {result['logs']}\n")


def cell(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    return str(value) if digits is None else f"{value:.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "not run" if ok is None else "met" if ok else "NOT met"


def print_setup(setup: dict[str, Any]) -> None:
    print(f"setup, {setup['runs']} runs             p50 s    p95 s")
    for name, key in (
        ("process start to first byte", "process_start_to_first_byte"),
        ("negotiation (client log)", "negotiation"),
    ):
        print(f"  {name:<28}{setup[key]['p50_s']:>8}{setup[key]['p95_s']:>9}")


def print_throughput(flows: dict[str, dict[str, Any]], transfer: dict[str, Any]) -> list[str]:
    """The throughput rows; what went wrong (failed, skipped, a wrong data path), for later."""
    mode_width = max(len(mode) for mode in MODES) + 1
    name_width = 2 + mode_width + max(len(m.label) for m in MODES.values())
    runs_width = max(
        [9, *(len(" ".join(map(str, flow.get("mb_s", [])))) for flow in flows.values())]
    )
    print(f"\nthroughput, {transfer['megabytes']} MB x {transfer['runs']}")
    print(
        f"  {'':<{name_width}}{'median':>7}  {'runs':<{runs_width}}{'CPU cores':^16}"
        f"{'ratio to':^17}".rstrip()
    )
    print(
        f"  {'':<{name_width}}{'MB/s':>7}  {'MB/s':<{runs_width}}{'daemon':>8}{'client':>8}"
        f"{'stock':>8}{'raw TCP':>9}"
    )
    problems = []
    for mode, flow in flows.items():
        name = f"{mode:<{mode_width}}{flow['label']}"
        if "median_mb_s" not in flow:
            outcome = "skipped" if "skipped" in flow else "failed"
            print(f"  {name:<{name_width}}{'-':>7}  {outcome.upper()}")
            problems.append(f"{mode} {outcome}: {flow.get('skipped') or flow.get('error')}")
            continue
        runs = " ".join(map(str, flow["mb_s"]))
        cores = flow["cpu_cores"]
        print(
            f"  {name:<{name_width}}{flow['median_mb_s']:>7}  {runs:<{runs_width}}"
            f"{cell(cores['daemon']):>8}{cell(cores['client']):>8}"
            f"{cell(flow.get('ratio_to_stock'), 2):>8}{cell(flow.get('ratio_to_raw_tcp'), 3):>9}"
        )
        if "warning" in flow:
            problems.append(f"{mode}: {flow['warning']}")
    print(
        "  CPU: cores busy during the transfer; client: homelab-p2p forward, for chromium all"
        "\n  of Chromium's processes, for raw-tcp this process (both ends)"
    )
    return problems


def print_goals(goals: dict[str, Any], met: dict[str, Any]) -> None:
    print(
        f"  goal: fast-rfc at least {goals['fast_rfc_median_mb_s']} MB/s: "
        f"{cell(met['fast_rfc_median_mb_s'])}, {verdict(met['fast_rfc_met'])}\n"
        f"  goal: best safe ({', '.join(goals['best_safe_modes'])}) at least "
        f"{goals['best_safe_median_mb_s']} MB/s: {cell(met['best_safe_median_mb_s'])}"
        f" ({cell(met['best_safe_mode'])}), {verdict(met['best_safe_met'])}"
    )


def print_profiles(flows: dict[str, dict[str, Any]]) -> None:
    for mode, flow in flows.items():
        for side, layers in flow.get("profile", {}).items():
            print(f"\n  where the time goes in {mode}, {side} (% of busy samples):")
            for layer, share in layers.items():
                print(f"    {share:>5.1f}  {layer}")


def mode_list(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"not a mode: {', '.join(unknown) or text!r} (modes: {', '.join(MODES)})"
        )
    return modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (default: 3)")
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--setup-runs", type=int, default=20)
    parser.add_argument(
        "--modes",
        type=mode_list,
        default=list(MODES),
        help=f"throughput modes, comma-separated (default: all of {','.join(MODES)}; "
        "chromium only where it is on PATH)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample both ends with py-spy during one more transfer",
    )
    parser.add_argument(
        "--profile-mode",
        choices=BRIDGE_MODES,
        default="fast-rfc",
        help="the mode --profile samples (default: fast-rfc)",
    )
    args = parser.parse_args()
    if args.profile and args.profile_mode not in args.modes:
        parser.error(f"--profile-mode {args.profile_mode} is not one of --modes")
    needs_root("benchmarks.bridge")
    report(asyncio.run(run(args)), print_table)


if __name__ == "__main__":
    main()
