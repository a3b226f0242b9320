"""A hostile WebRTC client, run as a process of its own in a lab namespace.

It is stock aiortc: none of the project's seams, so as a sender it ignores the receive
window the homelab advertises. Always with an explicit, empty ICE server list.

    python -m lab.attacker flood --service sink --seconds 8 URL CREDENTIAL_FILE
        pushes data into one channel as fast as aiortc sends for SECONDS, then closes;
    python -m lab.attacker channels --service echo7 --count 1100 URL CREDENTIAL_FILE
        opens COUNT channels, prints one JSON line of what became of them (how many were
        refused, with which code), and holds the others open until its stdin closes.

It is an authorized client (its credential is good): the homelab's limits are what stop it.
It prints ``connected`` once the peer connection is up.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from homelab_p2p.authenticate import offer_signal
from p2p_protocol import signals
from p2p_runtime.identity import Credential, load_credential
from signaling_client.link import Link

BLOCK = bytes(range(256)) * 64  # 16 KiB


async def connect(
    url: str, credential: Credential, target: str = "laptop"
) -> tuple[RTCPeerConnection, RTCDataChannel]:
    """A peer connection to ``target`` and its open ``echo`` channel."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answers: asyncio.Queue[signals.Signal] = asyncio.Queue()

    async def on_signal(sender: str, data: Any) -> None:
        answers.put_nowait(signals.parse_signal(data))

    async def on_error(message: dict[str, Any]) -> None:
        raise SystemExit(f"signaling refused: {message}")

    link = await Link.open(url, credential.signaling_token, on_signal, on_error)
    try:
        echo = pc.createDataChannel("echo")
        await pc.setLocalDescription(await pc.createOffer())
        offer = offer_signal(credential, target, pc.localDescription.sdp)
        await link.send({"action": "sendSignal", "to": target, "data": offer})
        answer = await asyncio.wait_for(answers.get(), 20)
        if answer.type != "answer":
            raise SystemExit(f"the homelab answered {answer}")
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                connected.set()

        await asyncio.wait_for(connected.wait(), 20)
    finally:
        await link.close()
    await opened(echo)
    print("connected", flush=True)
    return pc, echo


async def opened(channel: RTCDataChannel) -> None:
    ready = asyncio.Event()
    channel.on("open", ready.set)
    if channel.readyState != "open":
        await asyncio.wait_for(ready.wait(), 20)


async def flood(pc: RTCPeerConnection, service: str, seconds: float) -> None:
    channel = pc.createDataChannel(service)
    await opened(channel)
    sent, ends = 0, time.monotonic() + seconds
    while time.monotonic() < ends and channel.readyState == "open":
        if channel.bufferedAmount > 4 * 1024 * 1024:  # only this process's own memory
            await asyncio.sleep(0.005)
            continue
        channel.send(BLOCK)
        sent += len(BLOCK)
    print(json.dumps({"queued": sent}), flush=True)


async def channels(pc: RTCPeerConnection, echo: RTCDataChannel, service: str, count: int) -> None:
    outcomes: dict[str, int] = {}

    def count_refusal(message: Any) -> None:
        if isinstance(message, str):
            code = str(json.loads(message).get("error"))
            outcomes[code] = outcomes.get(code, 0) + 1

    created = []
    for _ in range(count):
        channel = pc.createDataChannel(service)
        channel.on("message", count_refusal)
        created.append(channel)
    await asyncio.gather(*(opened(channel) for channel in created), return_exceptions=True)
    # The homelab answers each channel as it opens, in order: once an echo sent after the
    # last opening comes back, every refusal it sent has arrived (one association, no loss).
    barrier = asyncio.Event()
    echo.on("message", lambda _: barrier.set())
    echo.send("barrier")
    await asyncio.wait_for(barrier.wait(), 20)
    print(json.dumps({"open": count - sum(outcomes.values()), "refused": outcomes}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="attacker")
    parser.add_argument("mode", choices=("flood", "channels"))
    parser.add_argument("url")
    parser.add_argument("credential", type=Path)
    parser.add_argument("--service", required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--count", type=int, default=1100)
    args = parser.parse_args(argv)
    pc, echo = await connect(args.url, load_credential(args.credential))
    try:
        if args.mode == "flood":
            await flood(pc, args.service, args.seconds)
        else:
            await channels(pc, echo, args.service, args.count)
    finally:
        await pc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
