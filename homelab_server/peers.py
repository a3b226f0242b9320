"""The homelab's peer connections: one per client that sends an offer.

Each offer gets an aiortc peer connection and an answer. Data channels the client opens
are served by the ServiceRouter. A peer is torn down when its connection fails or closes,
when the client says ``bye``, when the client offers again (a renegotiation replaces it),
or when the daemon stops. Past ``max_peers``, an offer gets an error signal instead.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from homelab_server import signals
from homelab_server.services import ServiceRouter
from homelab_server.webrtc import IcePolicy, PortRangeExhausted, new_peer_connection, selected_pair

log = logging.getLogger("homelab_server.peers")

SendSignal = Callable[[str, Any], Awaitable[bool]]


class Peer:
    def __init__(self, client_id: str, pc: RTCPeerConnection) -> None:
        self.client_id = client_id
        self.pc = pc
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("Serving a channel of %s failed (a bug)", self.client_id)

        task = asyncio.create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class PeerManager:
    def __init__(
        self, policy: IcePolicy, router: ServiceRouter, send_signal: SendSignal, max_peers: int
    ) -> None:
        self._policy = policy
        self._router = router
        self._send_signal = send_signal
        self._max_peers = max_peers
        self._peers: dict[str, Peer] = {}

    @property
    def count(self) -> int:
        return len(self._peers)

    async def on_signal(self, sender: str, data: Any) -> None:
        try:
            signal = signals.parse_signal(data)
        except signals.BadSignal as exc:
            log.warning("Ignored a signal from %s: %s", sender, exc)
            return
        if signal.type == "offer":
            await self._answer(sender, signal.sdp)
        elif signal.type == "candidate":
            await self._add_candidate(sender, signal.candidate or {})
        elif signal.type == "bye":
            await self.drop(sender, "the client said bye")
        elif signal.type == "ping":
            log.info("Answered a ping from %s (homelab-p2p doctor)", sender)
            await self._send_signal(sender, signals.pong(len(self._peers), self._max_peers))
        else:
            log.warning(
                "Ignored a %r signal from %s: a homelab only takes offers", signal.type, sender
            )

    async def on_signaling_error(self, message: dict[str, Any]) -> None:
        if message.get("error") == "backend_unreachable":
            # A client left signaling; its peer connection may live on, and ends by itself if not.
            log.debug("Signaling: %s is no longer connected to signaling", message.get("target"))
        else:
            log.warning("Signaling answered: %s", message.get("message") or message)

    async def _answer(self, client: str, sdp: str) -> None:
        if client in self._peers:
            await self.drop(client, "it offered again (renegotiation)")
        if len(self._peers) >= self._max_peers:
            log.warning(
                "Refused an offer from %s: max_peers (%d) peers are connected",
                client,
                self._max_peers,
            )
            await self._send_signal(
                client,
                signals.error(
                    "busy", f"the homelab serves {self._max_peers} peers already (max_peers)"
                ),
            )
            return
        log.info("Peer %s: offer received, answering", client)
        pc = new_peer_connection(self._policy)
        peer = Peer(client, pc)
        self._peers[client] = peer
        pc.on("datachannel", lambda channel: self._on_channel(peer, channel))
        pc.on("connectionstatechange", lambda: self._on_state(peer))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises various errors on an SDP it cannot use
            log.warning("Refused the offer of %s: %s: %s", client, type(exc).__name__, exc)
            await self._fail(peer, "bad_offer", f"the offer could not be used: {exc}")
            return
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except PortRangeExhausted as exc:
            log.error(
                "Refused the offer of %s: %s; widen ice_port_range or lower max_peers", client, exc
            )
            await self._fail(
                peer, "no_ports", "the homelab has no free UDP port for this connection"
            )
            return
        await self._send_signal(client, signals.answer(pc.localDescription.sdp))

    async def _fail(self, peer: Peer, code: str, message: str) -> None:
        await self._send_signal(peer.client_id, signals.error(code, message))
        await self.drop(peer.client_id, message)

    async def _add_candidate(self, client: str, candidate: dict[str, Any]) -> None:
        peer = self._peers.get(client)
        if peer is None:
            log.debug("Ignored a candidate from %s: no peer connection", client)
            return
        text = str(candidate["candidate"]).removeprefix("candidate:")
        if not text:
            return  # end of candidates
        try:
            parsed = candidate_from_sdp(text)
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            await peer.pc.addIceCandidate(parsed)
        except Exception as exc:
            log.warning("Ignored a candidate from %s: %s", client, exc)

    def _on_channel(self, peer: Peer, channel: RTCDataChannel) -> None:
        # Runs inside aiortc's packet handling: an exception here would end the connection.
        try:
            work = self._router.serve(channel, peer.client_id)
        except Exception:
            log.exception("Serving a channel of %s failed (a bug)", peer.client_id)
            return
        if work is not None:
            peer.spawn(work)

    def _on_state(self, peer: Peer) -> None:
        state = peer.pc.connectionState
        if state == "connected":
            pair = selected_pair(peer.pc)
            if pair is not None:
                kind, local, remote = pair
                log.info(
                    "Peer %s: connected over %s (local %s, remote %s)",
                    peer.client_id,
                    kind,
                    local,
                    remote,
                )
            else:
                log.info("Peer %s: connected", peer.client_id)
        elif state in ("failed", "closed") and self._peers.get(peer.client_id) is peer:
            peer.spawn(self.drop(peer.client_id, f"its connection {state}"))

    async def drop(self, client: str, why: str) -> None:
        peer = self._peers.pop(client, None)
        if peer is None:
            return
        log.info("Peer %s: closing, %s (%d peers left)", client, why, len(self._peers))
        others = [task for task in peer.tasks if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        with contextlib.suppress(Exception):
            await peer.pc.close()

    async def close_all(self) -> None:
        for client in list(self._peers):
            await self.drop(client, "the daemon is stopping")
