"""Falling forward (docs/client.md): a connection that had to start relayed through TURN
moves to a direct path once one opens; the relayed one serves its channels to their end."""

import asyncio
import os

from lab.bridge import EchoService, echo_round_trip
from tests.e2e.conftest import NatSetup
from tests.e2e.test_bridge_nat import SERVICES, client_ice, daemon_ice

HOMELAB_PUBLIC_IP = "203.0.113.11"
# In the client's router: nothing from the client's LAN to the homelab's public address.
# Signaling and coturn (203.0.113.1) stay reachable, so the connection starts relayed.
BLOCK_DIRECT = ["FORWARD", "-i", "nat2l", "-d", HOMELAB_PUBLIC_IP, "-p", "udp", "-j", "DROP"]
CHANNEL_PAIR = r"opened 'echo7' -> tcp://127\.0\.0\.1:7007 over (\w+)"


async def test_a_relayed_connection_falls_forward_once_the_direct_path_opens(
    nat_lab: NatSetup,
) -> None:
    router = nat_lab.nat.routers["nat2"]
    router.run("iptables", "-I", *BLOCK_DIRECT)
    async with EchoService(nat_lab.nat.homelab, 7007):
        daemon = await nat_lab.start_daemon(SERVICES, ice_servers=daemon_ice(True))
        forward, port = await nat_lab.start_forward(
            "echo7", *client_ice(True), "--fall-forward", "1"
        )
        # An ssh session, say, open across the change: half its bytes now, half after.
        old = await asyncio.open_connection(
            sock=nat_lab.nat.client.socket_connected("127.0.0.1", port)
        )
        payload = os.urandom(512 * 1024)
        half = len(payload) // 2
        old[1].write(payload[:half])
        assert await asyncio.wait_for(old[0].readexactly(half), 60) == payload[:half]
        assert (await daemon.logged(CHANNEL_PAIR)).group(1) == "relay"

        # It keeps trying while the direct path is blocked, and stays relayed meanwhile.
        tried = await forward.logged(r"No direct path yet \(ICE: ")
        router.run("iptables", "-D", *BLOCK_DIRECT)
        await forward.logged(
            r"Fell forward to a direct path \(srflx\)", within=60, since=tried.end()
        )

        # A new channel goes direct ...
        since = len(daemon.log())
        assert await echo_round_trip(nat_lab.nat.client, port, 256 * 1024)
        assert (await daemon.logged(CHANNEL_PAIR, since=since)).group(1) == "srflx"
        # ... while the old one, still relayed, finishes byte-exact, and then its connection
        # closes.
        old[1].write(payload[half:])
        rest = await asyncio.wait_for(old[0].readexactly(len(payload) - half), 60)
        assert rest == payload[half:]
        old[1].close()
        await forward.logged(r"The relayed connection's last channel ended; closing it")
        await daemon.logged(
            rf"closed 'echo7' \({len(payload)} bytes in, {len(payload)} bytes out\)"
        )
        assert forward.stop() == 0
