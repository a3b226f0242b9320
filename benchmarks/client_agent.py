"""The client agent and falling forward: a warm ``pipe`` beside a cold one, and how soon a
relayed connection's new channels go direct once a direct path opens.

    sudo .venv/bin/python -m benchmarks.client_agent [--runs 50] [--fall-forward-runs 3]
        (from the checkout)

Every process is started as users start it, and nothing leaves the lab: the ICE servers are
always given (none at all in the veth lab, the lab's coturn in the NAT lab). No process of
this benchmark uses or starts an agent unless told to per command (``HOMELAB_P2P_AGENT=off``
in its environment). Phases:

- first byte, in the veth lab of benchmarks/veth.py ("home" 10.99.0.1: the gateway,
  homelab_server and a TCP echo service ``echo7``; "client" 10.99.0.2): the time from
  starting ``homelab-p2p pipe echo7`` to the first byte echoed back (write one byte, read
  one, then close stdin),

  - cold: with ``--no-agent`` (Python's start-up, the CLI's imports, the whole negotiation);
  - warm: through a running agent (``HOMELAB_P2P_AGENT=auto``, its socket in the run's log
    directory), started before the timed runs by one untimed ``pipe`` and stopped after them
    with ``homelab-p2p agent --stop``;

  and, as the floor under the warm figure, the time to run ``true`` (what ``ip netns exec``
  itself costs), ``python -c pass`` and ``python -c "import homelab_p2p.launcher"`` (what
  the ``homelab-p2p`` script imports before it hands its stdio to the agent) in "client".
  ``--runs`` rounds, each running all of these once in turn (cold, warm, then the floors),
  so every way sees the same machine at the same moment. Reported: p50 and p95 of each,
  cold p50 over warm p50, and whether warm p50 meets the goal (at most 50 ms). The daemon's
  log must show one negotiation per cold run and one for the agent, or a warning says so.

- fall forward, in the NAT lab of tests/support/natlab.py (homelab and client each behind a
  cone NAT, the gateway and coturn on the "internet"; the daemon and the client given the
  lab's STUN and TURN servers). ``--fall-forward-runs`` times, with a fresh daemon and
  ``homelab-p2p forward echo7 -v --fall-forward 1``: the client's router drops its UDP to
  the homelab's public address (the rule of tests/e2e/test_fall_forward.py), so the
  connection starts relayed (checked with one connection through the forward); at the first
  ``No direct path yet`` the rule is lifted and the clock starts (T0). Measured from T0:

  - fell forward: until the forward logs ``Fell forward to a direct path`` (its stderr read
    as it comes, each line stamped on arrival). It includes the rest of the 1 s between
    attempts; the direct negotiation's own time (the forward's ``Connected ... in N s``) is
    reported beside it;
  - first direct channel: until a new TCP connection through the forward is served over
    srflx. Connections are opened one after the other from T0, each an echo round trip of
    16 bytes, until the daemon logs that a connection's channel opened ``over srflx``: the
    time when that round trip was complete.

  The reference, in the same run after the forward stopped: ``homelab-p2p pipe echo7
  --no-agent`` with the same ICE servers, from its start to its first echoed byte, a
  connection made from scratch over the now open path. Reported: the medians, and the first
  direct channel's median over the fresh connection's. A run that fails is reported as
  failed and the others still run.

Prints a table and one JSON line. Needs root (network namespaces). The processes' logs stay
in the two directories the table names.
"""

import argparse
import asyncio
import os
import queue
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks.bridge import ECHO_PORT, SINK_PORT, percentiles
from benchmarks.report import machine_description, needs_root, print_rows, report
from benchmarks.veth import SIGNALING, log_directory, veth_lab
from lab.bridge import (
    EchoService,
    LoggedProcess,
    assert_no_public_servers,
    client_args,
    echo_round_trip,
    first_echoed_byte,
    start_daemon,
    write_daemon_config,
)
from lab.gateway import GatewayProcess
from lab.netns import Namespace, lab, venv_bin
from tests.support.natlab import (
    INET_IP,
    TURN_PASSWORD,
    TURN_USER,
    NatLab,
    build_nat_lab,
    start_turn,
    wait_turn_ready,
)

WARM_GOAL_MS = 50
FIRST_BYTE_TIMEOUT_S = 30
WAY_LABELS = {
    "cold": "cold (--no-agent)",
    "warm": "warm (through the agent)",
    "netns_true": "floor: true",
    "python_pass": "floor: python -c pass",
    "python_launcher": "floor: import launcher",
}

# The NAT lab, as the end-to-end tests (test_bridge_nat.py, test_fall_forward.py) use it.
NAT_SIGNALING = f"ws://{INET_IP}:8765/prod"
STUN = f"stun:{INET_IP}:3478"
TURN = f"turn:{INET_IP}:3478?transport=udp"
DAEMON_ICE = [{"urls": STUN}, {"urls": TURN, "username": TURN_USER, "credential": TURN_PASSWORD}]
CLIENT_ICE = (
    "--ice-server", STUN,
    "--ice-server", TURN, "--ice-username", TURN_USER, "--ice-credential", TURN_PASSWORD,
)  # fmt: skip
NAT_SERVICES = {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}
HOMELAB_PUBLIC_IP = "203.0.113.11"
BLOCK_DIRECT = ("FORWARD", "-i", "nat2l", "-d", HOMELAB_PUBLIC_IP, "-p", "udp", "-j", "DROP")
"""In the client's router: nothing from the client's LAN to the homelab's public address
(signaling and coturn, 203.0.113.1, stay reachable, so the connection starts relayed)."""
FALL_FORWARD_S = 1
CHANNEL_PAIR = r"opened 'echo7' -> tcp://127\.0\.0\.1:7007 over (\w+)"
NO_DIRECT_YET = r"No direct path yet \(ICE: "
FELL_FORWARD = r"Fell forward to a direct path \((\w+)\) after ([\d.]+) s relayed"
CONNECTED = r"Connected to 'laptop' in ([\d.]+) s over (\w+)"
FALL_FORWARD_WITHIN_S = 60


# ---------------------------------------------------------------------------------------------
# Phase 1: the first byte, cold and warm


def with_agent(agent_socket: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` with the agent on, its socket at ``agent_socket`` (as a user's shell would)."""
    return ["env", "HOMELAB_P2P_AGENT=auto", f"HOMELAB_P2P_AGENT_SOCKET={agent_socket}", *argv]


async def first_byte_of(namespace: Namespace, argv: list[str]) -> float:
    seconds, _ = await first_echoed_byte(namespace, argv, within=FIRST_BYTE_TIMEOUT_S)
    return seconds


async def run_time(namespace: Namespace, argv: list[str]) -> float:
    """Seconds from starting ``argv`` to its exit (0, or RuntimeError)."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *namespace.command(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, stderr = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {stderr.decode()}")
    return elapsed


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def summary(values: list[float]) -> dict[str, float]:
    """percentiles() (p50_s, p95_s) and the same in ms to a tenth."""
    figures = percentiles(values)
    ordered = sorted(values)
    figures["p50_ms"] = ms(statistics.median(ordered))
    figures["p95_ms"] = ms(ordered[max(0, int(len(ordered) * 0.95) - 1)])
    return figures


async def first_byte_phase(runs: int) -> dict[str, Any]:
    with veth_lab("a", "bench-agent-", ECHO_PORT, SINK_PORT) as built:
        client, workdir = built.client, built.workdir
        agent_socket = workdir / "agent" / "agent.sock"
        pipe = [venv_bin("homelab-p2p"), "pipe", "echo7", *client_args(SIGNALING)]
        python = venv_bin("python")
        ways: dict[str, Callable[[], Awaitable[float]]] = {
            "cold": lambda: first_byte_of(client, [*pipe, "--no-agent"]),
            "warm": lambda: first_byte_of(client, with_agent(agent_socket, pipe)),
            "netns_true": lambda: run_time(client, ["true"]),
            "python_pass": lambda: run_time(client, [python, "-c", "pass"]),
            "python_launcher": lambda: run_time(
                client, [python, "-c", "import homelab_p2p.launcher"]
            ),
        }
        times: dict[str, list[float]] = {way: [] for way in ways}
        async with EchoService(built.home, ECHO_PORT):
            daemon = await start_daemon(built.home, built.daemon_config, workdir / "daemon.log")
            try:
                try:
                    # Untimed: starts the agent, which negotiates its connection and keeps it.
                    await first_byte_of(client, with_agent(agent_socket, pipe))
                    if not agent_socket.exists():
                        raise RuntimeError(f"the first pipe started no agent at {agent_socket}")
                    for _ in range(runs):
                        for way, timed in ways.items():
                            times[way].append(await timed())
                finally:
                    stopped = await asyncio.to_thread(
                        client.run,
                        *with_agent(agent_socket, [venv_bin("homelab-p2p"), "agent", "--stop"]),
                        check=False,
                    )
                offers = daemon.log().count("offer received")
            finally:
                daemon.stop()
    cold, warm = times["cold"], times["warm"]
    result: dict[str, Any] = {
        "runs": runs,
        "logs": str(workdir),
        "first_byte": {way: summary(values) for way, values in times.items()},
        "cold_p50_over_warm_p50": round(statistics.median(cold) / statistics.median(warm), 1),
        "warm_p50_ms": ms(statistics.median(warm)),
        "warm_p50_goal_ms": WARM_GOAL_MS,
        "warm_p50_met": statistics.median(warm) * 1000 <= WARM_GOAL_MS,
        "daemon_offers": offers,
        "agent_stopped": stopped.stdout.strip() == f"Stopped the agent at {agent_socket}",
    }
    warnings = []
    if offers != runs + 1:
        warnings.append(
            f"the daemon had {offers} offers, not {runs + 1} (one per cold run and the "
            "agent's): some warm runs did not go through the agent"
        )
    if not result["agent_stopped"]:
        warnings.append(f"agent --stop said: {stopped.stdout.strip()} {stopped.stderr.strip()}")
    if warnings:
        result["warning"] = "; ".join(warnings)
    return result


# ---------------------------------------------------------------------------------------------
# Phase 2: falling forward


class StreamedProcess(LoggedProcess):
    """A LoggedProcess whose stderr comes through a pipe: each line is stamped
    (``time.monotonic()``) as it arrives, then written to the log file, so a test of the log
    (``logged``) works as ever and ``line_after`` says when a line came."""

    def __init__(self, namespace: Namespace, argv: list[str], log_path: Path) -> None:
        # Not LoggedProcess.__init__: that sends stderr straight to the file.
        self.namespace = namespace
        self.argv = argv
        self.log_path = log_path
        self.lines: queue.Queue[str] = queue.Queue()
        self.stamped: list[tuple[float, str]] = []
        self._arrived = threading.Condition()
        self._ended = False
        self.process = namespace.popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._stamp, args=(self.process.stderr,), daemon=True).start()

    def _stamp(self, stream: IO[str]) -> None:
        with self.log_path.open("w") as log:
            for line in stream:
                arrived = time.monotonic()
                with self._arrived:
                    self.stamped.append((arrived, line))
                    self._arrived.notify_all()
                log.write(line)
                log.flush()
        with self._arrived:
            self._ended = True
            self._arrived.notify_all()

    def wait_line(self, pattern: str, after: float, within: float) -> tuple[float, re.Match[str]]:
        """The first line matching ``pattern`` that came at ``after`` or later: when, and the
        match."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + within
        checked = 0
        with self._arrived:
            while True:
                for arrived, line in self.stamped[checked:]:
                    match = compiled.search(line)
                    if match and arrived >= after:
                        return arrived, match
                checked = len(self.stamped)
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    why = "ended" if self._ended else f"went on for {within:g} s"
                    raise RuntimeError(f"{self.argv[0]} {why} without {pattern!r}:\n{self.log()}")
                self._arrived.wait(remaining)

    async def line_after(
        self, pattern: str, after: float = 0.0, within: float = 30
    ) -> tuple[float, re.Match[str]]:
        return await asyncio.to_thread(self.wait_line, pattern, after, within)


class DirectPathBlock:
    """BLOCK_DIRECT in the client's router, from ``block()`` until ``lift()`` (once)."""

    def __init__(self, router: Namespace) -> None:
        self.router = router
        self.blocked = False

    def block(self) -> None:
        self.router.run("iptables", "-I", *BLOCK_DIRECT)
        self.blocked = True

    def lift(self) -> None:
        if self.blocked:
            self.router.run("iptables", "-D", *BLOCK_DIRECT)
            self.blocked = False


async def start_streamed_forward(client: Namespace, log_path: Path) -> tuple[StreamedProcess, int]:
    """``homelab-p2p forward echo7 --listen 127.0.0.1:0 -v``, falling forward every 1 s."""
    argv = [
        venv_bin("homelab-p2p"),
        "forward",
        "echo7",
        "--listen",
        "127.0.0.1:0",
        "-v",
        *client_args(NAT_SIGNALING, *CLIENT_ICE, "--fall-forward", str(FALL_FORWARD_S)),
    ]
    forward = StreamedProcess(client, argv, log_path)
    try:
        line = await asyncio.to_thread(forward.next_line)
        match = re.match(r"Forwarding 127\.0\.0\.1:(\d+) to", line)
        if not match:
            raise RuntimeError(f"unexpected output {line!r}:\n{forward.log()}")
        await forward.line_after(r"ICE servers: ")  # the stamping thread wrote it by then
        assert_no_public_servers(forward)
    except BaseException:
        forward.stop()
        raise
    return forward, int(match.group(1))


async def first_direct_channel(
    client: Namespace, port: int, daemon: LoggedProcess, t0: float
) -> tuple[float, int]:
    """Echo round trips through the forward, one connection after the other, until one is
    served over srflx: seconds from ``t0`` to that round trip's end, and how many it took."""
    connections = 0
    pair = re.compile(CHANNEL_PAIR)
    while time.monotonic() - t0 < FALL_FORWARD_WITHIN_S:
        since = len(daemon.log())
        if not await echo_round_trip(client, port, 16):
            raise RuntimeError("a round trip through the forward came back wrong")
        served = time.monotonic()
        connections += 1
        opened = pair.search(daemon.log(), since)
        if opened and opened.group(1) == "srflx":
            return served - t0, connections
    raise RuntimeError(
        f"no connection through the forward was served over srflx within "
        f"{FALL_FORWARD_WITHIN_S} s of lifting the block ({connections} tried)"
    )


async def fall_forward_run(nat: NatLab, workdir: Path, index: int) -> dict[str, Any]:
    """One measurement with a fresh daemon and forward; the direct path blocked at first."""
    for router in nat.routers.values():  # no state left from the run before
        router.run("conntrack", "-F", check=False)
    block = DirectPathBlock(nat.routers["nat2"])
    block.block()
    try:
        config = write_daemon_config(
            workdir / f"daemon-{index}.yml",
            NAT_SIGNALING,
            NAT_SERVICES,
            log_level="INFO",
            ice_servers=DAEMON_ICE,
        )
        daemon = await start_daemon(nat.homelab, config, workdir / f"daemon-{index}.log")
        try:
            forward, port = await start_streamed_forward(
                nat.client, workdir / f"forward-{index}.log"
            )
            try:
                if not await echo_round_trip(nat.client, port, 1024):
                    raise RuntimeError("the first round trip through the forward came back wrong")
                started_over = (await daemon.logged(CHANNEL_PAIR)).group(1)
                if started_over != "relay":
                    raise RuntimeError(f"the connection started over {started_over}, not relay")
                tried, _ = await forward.line_after(NO_DIRECT_YET, within=FALL_FORWARD_WITHIN_S)
                block.lift()
                t0 = time.monotonic()
                direct_s, connections = await first_direct_channel(nat.client, port, daemon, t0)
                fell, fell_match = await forward.line_after(
                    FELL_FORWARD, after=t0, within=FALL_FORWARD_WITHIN_S
                )
                _, negotiated = await forward.line_after(CONNECTED, after=t0, within=1)
            finally:
                forward.stop()
            since = len(daemon.log())
            fresh_argv = [
                venv_bin("homelab-p2p"),
                "pipe",
                "echo7",
                "--no-agent",
                *client_args(NAT_SIGNALING, *CLIENT_ICE),
            ]
            fresh_s = await first_byte_of(nat.client, fresh_argv)
            fresh_pair = (await daemon.logged(CHANNEL_PAIR, since=since)).group(1)
        finally:
            daemon.stop()
    finally:
        block.lift()
    return {
        "fell_forward_s": round(fell - t0, 3),
        "fell_forward_pair": fell_match.group(1),
        "relayed_for_s": float(fell_match.group(2)),
        "direct_negotiation_s": float(negotiated.group(1)),
        "last_failed_attempt_to_t0_s": round(t0 - tried, 3),
        "first_direct_channel_s": round(direct_s, 3),
        "connections_until_direct": connections,
        "fresh_connection_first_byte_s": round(fresh_s, 3),
        "fresh_connection_pair": fresh_pair,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if key in run]
    return round(statistics.median(values), 3) if values else None


async def fall_forward_phase(runs: int) -> dict[str, Any]:
    workdir = log_directory("bench-agent-nat-")
    results: list[dict[str, Any]] = []
    with lab("f") as built:
        nat = build_nat_lab(built)
        start_turn(nat.inet, workdir)
        gateway = GatewayProcess(
            ["--host", INET_IP, "--port", "8765", "--secret-file", str(workdir / "secret"),
             "--log-level", "INFO"],
            workdir / "gateway.log",
            prefix=nat.inet.command([])[:4],
        ).start()  # fmt: skip
        try:
            await asyncio.to_thread(wait_turn_ready, workdir)
            async with EchoService(nat.homelab, ECHO_PORT):
                for index in range(runs):
                    try:
                        results.append(await fall_forward_run(nat, workdir, index))
                    except Exception as exc:  # reported; the other runs still run
                        results.append({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            gateway.stop()
    fresh = median_of(results, "fresh_connection_first_byte_s")
    fell = median_of(results, "fell_forward_s")
    direct = median_of(results, "first_direct_channel_s")
    return {
        "runs": runs,
        "fall_forward_s": FALL_FORWARD_S,
        "logs": str(workdir),
        "per_run": results,
        "failed": sum("error" in run for run in results),
        "median_fell_forward_s": fell,
        "median_first_direct_channel_s": direct,
        "median_direct_negotiation_s": median_of(results, "direct_negotiation_s"),
        "median_fresh_connection_first_byte_s": fresh,
        "first_direct_channel_over_fresh_connection": round(direct / fresh, 2)
        if direct and fresh
        else None,
        "fell_forward_over_fresh_connection": round(fell / fresh, 2) if fell and fresh else None,
    }


# ---------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "client_agent",
        "machine": machine_description(),
        "agent": await first_byte_phase(args.runs),
        "fall_forward": await fall_forward_phase(args.fall_forward_runs),
    }


def cell(value: Any) -> str:
    return "-" if value is None else str(value)


def print_table(result: dict[str, Any]) -> None:
    print(f"\nclient agent benchmark: {result['machine']}\n")
    agent = result["agent"]
    print(
        f"process start to first echoed byte, `homelab-p2p pipe echo7` in the veth lab, "
        f"{agent['runs']} rounds (floors: start to exit)"
    )
    print_rows(
        [("way", "way", 28), ("p50 ms", "p50", 9), ("p95 ms", "p95", 9)],
        [
            {"way": WAY_LABELS[way], "p50": figures["p50_ms"], "p95": figures["p95_ms"]}
            for way, figures in agent["first_byte"].items()
        ],
    )
    print(
        f"  cold p50 / warm p50: {agent['cold_p50_over_warm_p50']}x; goal: warm p50 at most "
        f"{agent['warm_p50_goal_ms']} ms: {agent['warm_p50_ms']} ms, "
        f"{'met' if agent['warm_p50_met'] else 'NOT met'}"
    )
    if "warning" in agent:
        print(f"  warning: {agent['warning']}")
    print(f"  logs: {agent['logs']}")

    fall = result["fall_forward"]
    print(
        f"\nfalling forward in the NAT lab, --fall-forward {fall['fall_forward_s']}, "
        f"{fall['runs']} runs (s from lifting the block)"
    )
    columns = [
        ("run", "run", 8),
        ("fell forward", "fell_forward_s", 14),
        ("first direct channel", "first_direct_channel_s", 22),
        ("connections", "connections_until_direct", 13),
        ("direct negotiation", "direct_negotiation_s", 20),
        ("fresh pipe first byte", "fresh_connection_first_byte_s", 23),
    ]
    rows: list[dict[str, Any]] = []
    for index, run_result in enumerate(fall["per_run"], start=1):
        if "error" in run_result:
            rows.append({key: "-" for _, key, _ in columns} | {"run": f"{index} FAILED"})
        else:
            rows.append(run_result | {"run": index})
    rows.append(
        {
            "run": "median",
            "fell_forward_s": cell(fall["median_fell_forward_s"]),
            "first_direct_channel_s": cell(fall["median_first_direct_channel_s"]),
            "connections_until_direct": "",
            "direct_negotiation_s": cell(fall["median_direct_negotiation_s"]),
            "fresh_connection_first_byte_s": cell(fall["median_fresh_connection_first_byte_s"]),
        }
    )
    print_rows(columns, rows)
    print(
        "  first direct channel / fresh connection's first byte (medians): "
        f"{cell(fall['first_direct_channel_over_fresh_connection'])}; fell forward / fresh: "
        f"{cell(fall['fell_forward_over_fresh_connection'])}"
    )
    pairs = {run["fresh_connection_pair"] for run in fall["per_run"] if "error" not in run}
    print(f"  the fresh pipe's channel went over: {', '.join(sorted(pairs)) or '-'}")
    for index, run_result in enumerate(fall["per_run"], start=1):
        if "error" in run_result:
            print(f"  run {index} failed: {run_result['error'].splitlines()[0]}")
    print(f"  logs: {fall['logs']}\n")


def main() -> None:
    # No process of this benchmark may use or leave an agent, but the warm runs' (per command).
    os.environ["HOMELAB_P2P_AGENT"] = "off"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=50, help="first-byte rounds, each of every way (default: 50)"
    )
    parser.add_argument(
        "--fall-forward-runs", type=int, default=3, help="fall-forward runs (default: 3)"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.fall_forward_runs < 1:
        parser.error("--runs and --fall-forward-runs must be at least 1")
    needs_root("benchmarks.client_agent")
    report(asyncio.run(run(args)), print_table)


if __name__ == "__main__":
    main()
