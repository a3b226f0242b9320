"""Random signals from several clients at once, against one daemon; it must stay sound.

Hypothesis writes scripts of signals (offers good and bad, candidates good and bad, byes,
pings, garbage), each from one of a few clients, interleaved, some in bursts from one
client. Every script is played
through the real gateway to the real daemon; then each client pings and the pongs say how
many peers the daemon holds (never more than max_peers; a pong comes once every earlier
signal of its client was handled), every client says bye, and the daemon must hold no
peer and no UDP socket. After all scripts: no traceback in its log,
and a well-behaved client still connects.
"""

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from homelab_server.peers import MAX_QUEUED_SIGNALS
from lab.bridge import EchoService
from lab.hostile import (
    eventually,
    next_signal,
    offer_sdp,
    open_client,
    signal,
    sockets_of,
)
from tests.e2e.conftest import GATEWAY_IP, LanLab
from tests.e2e.test_hostile_peers import ECHO_PORT, assert_clean, connects_and_echoes

CLIENTS = 3
MAX_PEERS = 2

candidates = st.one_of(
    st.builds(
        lambda host, port: f"candidate:1 1 udp 2130706431 {host} {port} typ host",
        st.sampled_from(["10.77.0.3", "10.77.0.99", "192.0.2.1", "fd00::9", "x.local"]),
        st.integers(1, 65535),
    ),
    st.just(""),  # end of candidates
    st.text(max_size=40),
)
answerable = st.builds(offer_sdp, st.lists(candidates.map(lambda c: c[10:]), max_size=3))
unanswerable = st.one_of(
    st.just("v=0\r\n"),
    st.builds(lambda cut: offer_sdp()[:cut], st.integers(3, 300)),
    st.builds(lambda: offer_sdp().replace("a=ice-ufrag", "a=ice-frag")),
)
garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
good_offer = answerable.map(lambda sdp: {"type": "offer", "sdp": sdp})
signals = st.one_of(
    good_offer,
    good_offer,
    good_offer,  # three times as likely as any other kind: peers are made, and evicted
    unanswerable.map(lambda sdp: {"type": "offer", "sdp": sdp}),
    candidates.map(lambda c: {"type": "candidate", "candidate": c, "sdpMid": "0"}),
    st.just({"type": "bye"}),
    st.just({"type": "ping"}),
    st.just({"type": "answer", "sdp": "v=0\r\n"}),
    garbage,
    garbage.map(json.dumps),  # a JSON string, as the original library sent
)
clients = st.integers(0, CLIENTS - 1)
one = st.tuples(clients, signals).map(lambda step: [step])
burst = st.tuples(clients, st.lists(signals, min_size=2, max_size=8)).map(
    lambda step: [(step[0], data) for data in step[1]]  # one client, back to back
)
scripts = (
    st.lists(st.one_of(one, burst), min_size=1, max_size=12)
    .map(lambda steps: [step for steps_ in steps for step in steps_])
    # The daemon drops what a client sends beyond MAX_QUEUED_SIGNALS waiting (its own test is
    # in test_hostile_peers.py). Here every signal must arrive, the pings included, or the
    # pong that answers "all handled" never comes: each client stays below the limit.
    .filter(
        lambda script: all(
            sum(index == client for index, _ in script) < MAX_QUEUED_SIGNALS - 1
            for client in range(CLIENTS)
        )
    )
)


class Client:
    """One fuzzing client's signaling connection; counts its pings to match the pongs."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pings = 0
        self.pongs = 0

    async def send(self, data: Any) -> None:
        if isinstance(data, dict) and data.get("type") == "ping":
            self.pings += 1
        await signal(self.ws, data)

    async def pong(self) -> dict[str, Any]:
        """Ping, then the pong that answers it: every earlier signal has been handled then."""
        await self.send({"type": "ping"})
        while True:
            reply = await next_signal(self.ws)
            if reply.get("type") == "pong":
                self.pongs += 1
                if self.pongs == self.pings:
                    return reply


async def play(lan: LanLab, pid: int, script: list[tuple[int, Any]]) -> None:
    clients = [Client(await open_client(lan.client, GATEWAY_IP)) for _ in range(CLIENTS)]
    try:
        for index, data in script:
            await clients[index].send(data)
        pongs = await asyncio.gather(*(client.pong() for client in clients))
        assert all(pong["peers"] <= MAX_PEERS for pong in pongs), pongs
        for client in clients:
            await client.send({"type": "bye"})
        await asyncio.gather(*(client.pong() for client in clients))
        # Every client's bye has been handled now (each came before that client's pong).
        assert (await clients[0].pong())["peers"] == 0
        # A peer whose connection failed meanwhile is closed apart from the signals: its
        # sockets must go too.
        await eventually(lambda: not sockets_of(pid, "udp"))
    finally:
        for client in clients:
            await client.ws.close()


async def test_random_signals_leave_the_daemon_bounded(lan: LanLab) -> None:
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(
            {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}, max_peers=MAX_PEERS
        )
        loop = asyncio.get_running_loop()

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(scripts)
        def fuzz(script: list[tuple[int, Any]]) -> None:
            played = play(lan, daemon.process.pid, script)
            asyncio.run_coroutine_threadsafe(played, loop).result(120)

        await asyncio.to_thread(fuzz)
        await connects_and_echoes(lan, "after")
        assert_clean(daemon)
