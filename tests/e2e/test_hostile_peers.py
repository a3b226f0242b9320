"""Hostile clients against the daemon: each attack of issue 13, as an attacker would run it.

Gateway, homelab and client each on a host of their own (the ``lan`` fixture); the daemon
and the attackers are real processes (lab/attacker.py is stock aiortc), or
signaling connections from the client's host. Each test checks that the daemon stays
bounded, says why in one log line, and still serves a well-behaved client afterwards.
"""

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator

from aiohttp import web

from lab import credential, credential_file
from lab.bridge import EchoService, LoggedProcess, client_args, echo_round_trip
from lab.hostile import (
    next_signal,
    offer,
    open_client,
    signal,
    sockets_of,
    tcp_peers_on_port,
)
from lab.netns import venv_bin
from lab.websites import serving
from tests.e2e.conftest import GATEWAY_IP, LanLab
from tests.e2e.test_flow_control import PeakRss

ECHO_PORT = 7007
SINK_PORT = 7020
WEB_PORT = 8081
GROWTH_LIMIT = 24 * 1024 * 1024  # bounded: about the window; unbounded it was 340 MB


def assert_clean(daemon: LoggedProcess) -> None:
    """Nothing a peer sent made the daemon raise."""
    assert "Traceback" not in daemon.log(), daemon.log()
    assert "(a bug)" not in daemon.log(), daemon.log()


async def connects_and_echoes(lan: LanLab, name: str) -> None:
    """A well-behaved client still gets through."""
    forward, port = await lan.start_forward("echo7", name=name)
    assert await echo_round_trip(lan.client, port, 256 * 1024)
    forward.stop()


def attacker(lan: LanLab, mode: str, name: str, *args: str) -> LoggedProcess:
    argv = [
        venv_bin("python"),
        "-m",
        "lab.attacker",
        mode,
        lan.signaling_url,
        str(credential_file(credential("client", "attacker"))),
        *args,
    ]
    return LoggedProcess(lan.client, argv, lan.workdir / f"{name}.log")


class Sink:
    """A tcp:// service that accepts connections and never reads from them."""

    def __init__(self) -> None:
        self.connections: list[asyncio.StreamWriter] = []

    @contextlib.asynccontextmanager
    async def serving(self, lan: LanLab) -> AsyncIterator[None]:
        def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections.append(writer)

        server = await asyncio.start_server(
            accept, sock=lan.homelab.socket_listening("127.0.0.1", SINK_PORT)
        )
        try:
            yield
        finally:
            server.close()
            for writer in self.connections:
                writer.transport.abort()


async def test_a_sender_that_ignores_the_window_cannot_grow_the_daemon(lan: LanLab) -> None:
    """Row 1: stock aiortc writes into a service that never reads."""
    async with EchoService(lan.homelab, ECHO_PORT), Sink().serving(lan):
        daemon = await lan.start_daemon(
            {"sink": f"tcp://127.0.0.1:{SINK_PORT}", "echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}
        )
        memory = PeakRss(daemon)
        async with memory.watching():
            flood = attacker(lan, "flood", "flood", "--service", "sink", "--seconds", "8")
            await asyncio.to_thread(flood.process.wait, 60)
        assert flood.process.returncode == 0, flood.log()
        assert memory.growth < GROWTH_LIMIT, f"the daemon grew by {memory.growth / 2**20:.1f} MB"
        await daemon.logged(
            r"\[WARNING\] Peer \S+ sent data beyond the receive window it was given "
            r"\(1048576 bytes\): dropping such data unacknowledged"
        )
        # The attacker left: the bytes the service never took are not kept for it.
        await daemon.logged(
            r"'sink' had not taken \d+ bytes when its peer went away; its connection was reset"
        )
        assert tcp_peers_on_port(daemon.process.pid, SINK_PORT) == 0
        await connects_and_echoes(lan, "after")
        assert_clean(daemon)


async def test_offers_that_can_never_connect_give_their_places_back(lan: LanLab) -> None:
    """Row 2: offers without a data channel or candidates must not hold places."""
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(
            {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}, max_peers=2, peer_connect_timeout=5
        )
        junk = [await open_client(lan.client, GATEWAY_IP) for _ in range(3)]
        await signal(junk[0], {"type": "offer", "sdp": "v=0\r\n"})
        refused = await next_signal(junk[0])
        assert (refused["type"], refused["code"]) == ("error", "bad_offer")
        assert "no data channel section" in refused["message"]
        for ws in junk[1:]:  # parse, but name no candidate: they can never connect
            await signal(ws, offer())
            assert (await next_signal(ws))["type"] == "answer"

        # Both places are held by offers that will not connect: a real client gets one.
        await connects_and_echoes(lan, "real")
        await daemon.logged(r"Peer \S+: closing, its place went to a newer offer")
        evicted = await next_signal(junk[1])
        assert (evicted["type"], evicted["code"]) == ("error", "busy")

        # The other one runs out of time.
        timed_out = await next_signal(junk[2])
        assert (timed_out["type"], timed_out["code"]) == ("error", "timeout")
        await daemon.logged(
            r"\[WARNING\] Peer \S+: closing, it did not connect within 5 s \(peer_connect_timeout\)"
        )
        for ws in junk:
            await ws.close()
        assert_clean(daemon)


async def test_back_to_back_offers_from_one_client_leave_nothing_behind(lan: LanLab) -> None:
    """Row 3: 20 offers at once from one connection, then it leaves."""
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(
            {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"},
            max_peers=4,
            peer_connect_timeout=5,
            ice_port_range=[50000, 50009],
        )
        ws = await open_client(lan.client, GATEWAY_IP)
        await asyncio.gather(*(signal(ws, offer()) for _ in range(20)))
        await signal(ws, {"type": "ping"})
        replies = [await next_signal(ws) for _ in range(21)]
        kinds = [reply.get("code", reply["type"]) for reply in replies]
        # Handled in order: ten answers (each replacing the one before), then the rate limit.
        assert kinds == ["answer"] * 10 + ["rate_limited"] * 10 + ["pong"], kinds
        assert (replies[-1]["peers"], replies[-1]["max_peers"]) == (1, 4)
        assert daemon.log().count("more than 10 offers a minute (max_offers_per_minute)") == 1
        await ws.close()

        timed_out = await daemon.logged(r"closing, it did not connect within 5 s")
        await daemon.logged(r"closed, its sockets released", since=timed_out.end())
        assert sockets_of(daemon.process.pid, "udp") == []
        await connects_and_echoes(lan, "after")  # the port range is whole again
        assert_clean(daemon)


async def test_a_thousand_channels_from_one_peer_get_its_limit(lan: LanLab) -> None:
    """Row 5: one peer opens 1,100 data channels to a tcp:// service."""
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon({"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"})
        argv = [
            venv_bin("python"),
            "-m",
            "lab.attacker",
            "channels",
            lan.signaling_url,
            str(credential_file(credential("client", "attacker"))),
            "--service",
            "echo7",
            "--count",
            "1100",
        ]
        with (lan.workdir / "channels.log").open("wb") as log:
            holder = lan.client.popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        stdout = holder.stdout
        assert stdout is not None
        lines = [await asyncio.to_thread(stdout.readline) for _ in range(2)]
        assert lines[0] == b"connected\n", (lines, (lan.workdir / "channels.log").read_text())
        outcome = json.loads(lines[1])
        # Its echo probe channel is one of the 64 it may hold.
        assert outcome == {"open": 63, "refused": {"too_many_channels": 1037}}
        assert tcp_peers_on_port(daemon.process.pid, ECHO_PORT) == 63
        await connects_and_echoes(lan, "meanwhile")  # while it holds its 64
        assert daemon.log().count("(max_channels_per_peer)") == 1
        assert holder.stdin is not None
        holder.stdin.close()
        await asyncio.to_thread(holder.wait, 30)
        await daemon.logged(
            r"closing, its connection closed \(\d+ peers left; refused 1037 channels\)"
        )
        assert "Too many open files" not in daemon.log()
        assert_clean(daemon)


@contextlib.asynccontextmanager
async def recording_web_app(lan: LanLab) -> AsyncIterator[list[str]]:
    """An http:// service that answers every path and records what it was asked."""
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.raw_path}")
        return web.Response(text=f"you asked for {request.raw_path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    async with serving(app, lan.homelab, WEB_PORT):
        yield seen


async def fetch(lan: LanLab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [venv_bin("homelab-p2p"), "fetch", *args, *client_args(lan.signaling_url)]
    return await asyncio.to_thread(lan.client.run, *argv, check=False)


async def test_paths_that_leave_the_base_path_are_refused(lan: LanLab) -> None:
    """Row 6: dot segments, encoded or not, against a service with a base path."""
    async with recording_web_app(lan) as seen:
        daemon = await lan.start_daemon({"web": f"http://127.0.0.1:{WEB_PORT}/app"})
        for path in ("/../admin/secret", "/%2e%2e/admin", "/a/../../admin", "/.%2E/admin"):
            result = await fetch(lan, "web", path)
            assert result.returncode == 1, result
            assert result.stderr == (
                "homelab-p2p: 'web': bad_request: \"path\" climbs out of the service's base "
                'path ("..")\n'
            )
        for path, problem in (
            ("/..\\admin", 'must not hold a backslash or "#"'),
            ("/x%2f..%2f..%2fadmin", 'must not hold an encoded "/"'),
        ):
            result = await fetch(lan, "web", path)
            assert (result.returncode, problem in result.stderr) == (1, True), result
        assert seen == []
        result = await fetch(lan, "web", "/a/../ok?next=/../x")
        assert (result.returncode, result.stdout) == (0, "you asked for /app/ok?next=/../x")
        assert seen == ["GET /app/ok?next=/../x"]
        await daemon.logged(r"\[WARNING\] Refused an HTTP request of \S+ on 'web': \"path\" climbs")
        assert_clean(daemon)


async def test_ambiguous_http_framing_is_refused_with_bad_request(lan: LanLab) -> None:
    """Row 7: two lengths, a length that is no number, control characters."""
    async with recording_web_app(lan) as seen:
        daemon = await lan.start_daemon({"web": f"http://127.0.0.1:{WEB_PORT}/app"})
        for headers, problem in (
            (["Content-Length: 3", "Content-Length: 30"], "more than one Content-Length header"),
            (["Content-Length: abc"], "Content-Length 'abc' is not a number of bytes"),
            (["Content-Length: -1"], "Content-Length '-1' is not a number of bytes"),
            (["Content-Length: 3", "Transfer-Encoding: chunked"], "both Content-Length and"),
            (["X-Note: bell\x07"], "is not a [name, value] pair of valid strings"),
            (["Content-Length: 1"], "the body is longer than its Content-Length 1"),
        ):
            flags = [part for header in headers for part in ("-H", header)]
            result = await fetch(lan, "web", "/upload", "-X", "POST", *flags, "-d", "abc")
            assert result.returncode == 1, result
            assert result.stderr.startswith("homelab-p2p: 'web': bad_request: "), result.stderr
            assert problem in result.stderr, result.stderr
        assert all(path.startswith("POST /app/upload") for path in seen)  # the short body's
        assert len(seen) <= 1  # ...request may have reached it, cut off: never a second one
        assert_clean(daemon)


async def test_fetch_of_an_unknown_service_says_why(lan: LanLab) -> None:
    """Row 11: the homelab refuses the channel and closes it as the request goes out."""
    daemon = await lan.start_daemon({"web": f"http://127.0.0.1:{WEB_PORT}"})
    for _ in range(3):
        result = await fetch(lan, "nosuch", "/")
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr
        assert (
            "unknown_service: this homelab offers no service 'nosuch' (offered: web, echo)"
            in result.stderr
        ), result.stderr
    assert_clean(daemon)


async def test_a_client_that_does_not_connect_in_time_is_told_why(lan: LanLab) -> None:
    """A client offering no usable path hears the homelab's reason, not an ICE timeout."""
    daemon = await lan.start_daemon({}, peer_connect_timeout=5)
    # --relay-only with no TURN server: an offer without a single candidate.
    argv = [
        venv_bin("homelab-p2p"),
        "pipe",
        "echo",
        *client_args(lan.signaling_url, "--relay-only"),
    ]
    result = await asyncio.to_thread(lan.client.run, *argv, check=False)
    assert result.returncode == 1
    assert result.stderr == (
        "homelab-p2p: signaling: the homelab closed the connection before it was up (timeout): "
        "it did not connect within 5 s (peer_connect_timeout)\n"
    )
    assert_clean(daemon)
