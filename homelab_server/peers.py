"""The homelab's peer connections: one per client that sends an offer.

Each offer gets an aiortc peer connection and an answer. Data channels the client opens
are served by the ServiceRouter. A peer is torn down when its connection fails or closes,
when the client says ``bye``, when the client offers again (a renegotiation replaces it),
when it has not connected within ``connect_timeout``, or when the daemon stops.

A client is a signaling connection id. Everything a client sends is bounded
(docs/security.md lists each limit):

- its signals are handled one after another, in order (``ClientInbox``), at most
  ``MAX_QUEUED_SIGNALS`` waiting, so a replaced peer is always closed before the next;
- ``offers_per_minute`` offers (a token bucket), each checked before anything is created
  (``signals.check_offer``: a data channel section, ICE credentials, a fingerprint), then
  its credential and proof (``authorize.py``): only the services the credential lists open;
- one peer per client, ``max_peers`` in all; when every place is taken, a new offer takes
  the place of the peer that has waited longest without connecting, and only when all
  of them are connected is it refused (``busy``);
- ``max_channels`` data channels open per peer, ``signals.MAX_CANDIDATES`` candidates.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from homelab_server import metrics
from homelab_server.authorize import PeerAuthorizer
from homelab_server.services import ServiceRouter
from p2p_protocol import signals
from p2p_protocol.errors import ChannelRefusal, PeerRefusal
from p2p_protocol.identity import Certificate, IdentityError
from p2p_protocol.messages import ErrorCode, error_code
from p2p_runtime.ratelimit import TokenBucket
from p2p_runtime.tasks import OwnedTasks
from p2p_webrtc import (
    IcePolicy,
    PortRangeExhausted,
    new_peer_connection,
    round_trip,
    selected_pair,
    traffic,
    watch_peer,
)
from p2p_webrtc.channels import refuse

log = logging.getLogger("homelab_server.peers")

SendSignal = Callable[[str, Any], Awaitable[bool]]

MAX_QUEUED_SIGNALS = 32
"""Signals of one client waiting to be handled; more are dropped (and logged once)."""
MAX_CLIENTS_WAITING = 256
"""Clients with signals waiting at once; signals of further clients are dropped."""
REMEMBERED_OFFER_RATES = 1024
"""Clients whose offer rate is remembered (the least recent is forgotten first)."""


@dataclass(frozen=True)
class PeerLimits:
    """The daemon's configurable limits on peers (config.yml keys in brackets)."""

    max_peers: int = 32
    """[max_peers] Peer connections at once, connected or not."""
    connect_timeout: float = 30.0
    """[peer_connect_timeout] Seconds from the offer until the peer must be connected."""
    max_channels: int = 64
    """[max_channels_per_peer] Data channels open at once on one peer connection."""
    offers_per_minute: int = 10
    """[max_offers_per_minute] Offers one client may send a minute (bursts as large)."""


class Peer:
    def __init__(self, client_id: str, pc: RTCPeerConnection, credential: Certificate) -> None:
        self.client_id = client_id
        self.pc = pc
        self.credential = credential
        """The client's certificate, checked: whom the peer serves, and which services."""
        self.tasks = OwnedTasks(log, f"Serving a channel of {client_id}")
        self.offered_at = time.monotonic()
        self.connected = False
        self.pair: str | None = None
        """host, srflx or relay once connected (p2p_webrtc.selected_pair)."""
        self.channels = 0
        self.channels_refused = 0
        self.candidates = 0
        self.deadline: asyncio.TimerHandle | None = None

    def channel_closed(self) -> None:
        self.channels -= 1


@dataclass
class OfferRate:
    """How fast one client offers, and whether its refusal was logged already."""

    bucket: TokenBucket
    refusing: bool = False


class ClientInbox:
    """Each client's signals, handled one after another in the order they arrived."""

    def __init__(self, handle: Callable[[str, signals.Signal], Awaitable[None]]) -> None:
        self._handle = handle
        self._queues: dict[str, deque[signals.Signal]] = {}
        self._dropped: dict[str, int] = {}
        """Signals dropped per client with a full queue, reported when its queue empties."""
        self._turned_away = 0
        """Signals dropped while too many clients had signals waiting."""
        self._workers = OwnedTasks(log, "Handling signals")

    def put(self, client: str, signal: signals.Signal) -> None:
        queue = self._queues.get(client)
        if queue is None:
            if len(self._queues) >= MAX_CLIENTS_WAITING:
                if not self._turned_away:
                    log.warning(
                        "Ignored a signal from %s: %d clients have signals waiting already",
                        client,
                        MAX_CLIENTS_WAITING,
                    )
                self._turned_away += 1
                return
            if self._turned_away:
                log.info("Signals: %d were dropped while clients crowded in", self._turned_away)
                self._turned_away = 0
            queue = self._queues[client] = deque()
            self._workers.spawn(self._serve(client, queue))
        elif len(queue) >= MAX_QUEUED_SIGNALS:
            dropped = self._dropped.get(client, 0)
            if not dropped:
                log.warning(
                    "Ignored a signal from %s: %d of its signals are waiting already",
                    client,
                    MAX_QUEUED_SIGNALS,
                )
            self._dropped[client] = dropped + 1
            return
        queue.append(signal)

    async def _serve(self, client: str, queue: deque[signals.Signal]) -> None:
        try:
            while queue:
                signal = queue.popleft()
                try:
                    await self._handle(client, signal)
                except Exception:
                    log.exception("Handling a %s signal of %s failed (a bug)", signal.type, client)
        finally:
            del self._queues[client]
            if dropped := self._dropped.pop(client, 0):
                log.info("Signals from %s: %d were dropped while it sent too fast", client, dropped)

    async def close(self) -> None:
        await self._workers.cancel()


class PeerManager:
    def __init__(
        self,
        policy: IcePolicy,
        router: ServiceRouter,
        send_signal: SendSignal,
        limits: PeerLimits,
        authorizer: PeerAuthorizer,
    ) -> None:
        self._policy = policy
        self._authorizer = authorizer
        self._router = router
        self._send_signal = send_signal
        self.limits = limits
        self._peers: dict[str, Peer] = {}
        self._inbox = ClientInbox(self._handle)
        self._offer_rates: OrderedDict[str, OfferRate] = OrderedDict()
        self._tasks = OwnedTasks(log, "Closing a peer")
        self.offers_refused: Counter[str] = Counter()
        """Offers refused since the daemon started, by the code the client was sent."""

    @property
    def count(self) -> int:
        return len(self._peers)

    def describe(self) -> list[dict[str, Any]]:
        """Each peer as ``homelab-p2p status`` shows it (docs/operations.md)."""
        now = time.monotonic()
        described = []
        for peer in self._peers.values():
            sent, received = traffic(peer.pc)
            rtt = round_trip(peer.pc)
            described.append(
                {
                    "client": peer.credential.name,
                    "credential": peer.credential.id,
                    "signaling_id": peer.client_id,
                    "state": "connected" if peer.connected else "connecting",
                    "pair": peer.pair,
                    "age_seconds": round(now - peer.offered_at, 1),
                    "channels": peer.channels,
                    "channels_refused": peer.channels_refused,
                    "bytes_sent": sent,
                    "bytes_received": received,
                    "round_trip_ms": None if rtt is None else round(rtt * 1000, 1),
                }
            )
        return described

    async def on_signal(self, sender: str, data: Any) -> None:
        signal = signals.parse_or_ignore(sender, data, log)
        if signal is not None:
            self._inbox.put(sender, signal)

    async def _handle(self, sender: str, signal: signals.Signal) -> None:
        if signal.type == "offer":
            await self._answer(sender, signal)
        elif signal.type == "candidate":
            await self._add_candidate(sender, signal.candidate or {})
        elif signal.type == "bye":
            await self.drop(sender, "the client said bye")
        elif signal.type == "ping":
            log.info("Answered a ping from %s (homelab-p2p doctor)", sender)
            await self._send_signal(sender, signals.pong(len(self._peers), self.limits.max_peers))
        else:
            log.warning(
                "Ignored a %r signal from %s: a homelab only takes offers", signal.type, sender
            )

    async def on_signaling_error(self, message: dict[str, Any]) -> None:
        if error_code(message) is ErrorCode.BACKEND_UNREACHABLE:
            # A client left signaling; its peer connection may live on, and ends by itself if not.
            log.debug("Signaling: %s is no longer connected to signaling", message.get("target"))
        else:
            log.warning("Signaling answered: %s", message.get("message") or message)

    # --- offers ------------------------------------------------------------------------

    def _offer_rate(self, client: str) -> OfferRate:
        rate = self._offer_rates.pop(client, None)
        if rate is None:
            per_minute = self.limits.offers_per_minute
            rate = OfferRate(TokenBucket(per_minute / 60, per_minute))
        self._offer_rates[client] = rate  # the most recent last
        while len(self._offer_rates) > REMEMBERED_OFFER_RATES:
            self._offer_rates.popitem(last=False)
        return rate

    async def _refuse(self, client: str, code: PeerRefusal, message: str) -> None:
        await self._send_signal(client, signals.error(code, message))

    async def _refuse_offer(self, client: str, code: PeerRefusal, message: str) -> None:
        self.offers_refused[code.value] += 1
        metrics.OFFERS_REFUSED.labels(code.value).inc()
        await self._refuse(client, code, message)

    async def _answer(self, client: str, offer: signals.Signal) -> None:
        admitted = await self._admitted(client, offer)
        if admitted is None:
            return
        candidates, credential = admitted
        if client in self._peers:
            await self.drop(client, "it offered again (renegotiation)")
        victim = None
        if len(self._peers) >= self.limits.max_peers:
            victim = self._longest_waiting()
            if victim is None:
                await self._refuse_busy(client)
                return
            del self._peers[victim.client_id]  # its place is the new peer's from now on
        peer = self._new_peer(client, candidates, credential)
        if victim is not None:
            await self._give_place_away(victim)
        await self._negotiate(peer, offer.sdp)

    async def _admitted(self, client: str, offer: signals.Signal) -> tuple[int, Certificate] | None:
        """The offer's candidate count and the client's certificate if it may be answered;
        else None, the client told why."""
        if not await self._offer_rate_allows(client):
            return None
        try:
            candidates = signals.check_offer(offer.sdp)
        except signals.BadSignal as exc:
            log.warning("Refused the offer of %s: %s", client, exc)
            await self._refuse_offer(client, PeerRefusal.BAD_OFFER, str(exc))
            return None
        try:
            credential = self._authorizer.check_offer(offer.identity, offer.sdp)
        except IdentityError as exc:
            log.warning("Refused the offer of %s: %s", client, exc)
            await self._refuse_offer(
                client, PeerRefusal.UNAUTHORIZED, f"the offer was refused: {exc}"
            )
            return None
        return candidates, credential

    async def _offer_rate_allows(self, client: str) -> bool:
        rate = self._offer_rate(client)
        per_minute = self.limits.offers_per_minute
        if rate.bucket.allow():
            rate.refusing = False
            return True
        if not rate.refusing:  # one line per run of refusals
            rate.refusing = True
            log.warning(
                "Refused an offer from %s: more than %d offers a minute (max_offers_per_minute)",
                client,
                per_minute,
            )
        await self._refuse_offer(
            client,
            PeerRefusal.RATE_LIMITED,
            f"at most {per_minute} offers a minute (max_offers_per_minute)",
        )
        return False

    async def _refuse_busy(self, client: str) -> None:
        max_peers = self.limits.max_peers
        log.warning(
            "Refused an offer from %s: max_peers (%d) peers are connected", client, max_peers
        )
        await self._refuse_offer(
            client, PeerRefusal.BUSY, f"the homelab serves {max_peers} peers already (max_peers)"
        )

    def _new_peer(self, client: str, candidates: int, credential: Certificate) -> Peer:
        """A peer connection for the client's offer, in its place, its deadline running."""
        log.info(
            "Peer %s: offer received from %s, answering (%s)",
            client,
            credential.describe(),
            credential.scope(),
        )
        pc = new_peer_connection(self._policy)
        peer = Peer(client, pc, credential)
        peer.candidates = candidates
        self._peers[client] = peer
        peer.deadline = asyncio.get_running_loop().call_later(
            self.limits.connect_timeout, self._deadline_passed, peer
        )
        pc.on("datachannel", lambda channel: self._on_channel(peer, channel))
        pc.on("connectionstatechange", lambda: self._on_state(peer))
        return peer

    async def _give_place_away(self, victim: Peer) -> None:
        """Close a peer whose place a newer offer took, telling its client."""
        waited = time.monotonic() - victim.offered_at
        await self._close(
            victim,
            f"its place went to a newer offer: it had not connected after {waited:.1f} s "
            f"and all max_peers ({self.limits.max_peers}) places were taken",
            code=PeerRefusal.BUSY,
        )

    def _longest_waiting(self) -> Peer | None:
        """The peer that has waited longest without connecting, if any."""
        waiting = [peer for peer in self._peers.values() if not peer.connected]
        return min(waiting, key=lambda peer: peer.offered_at, default=None)

    async def _negotiate(self, peer: Peer, sdp: str) -> None:
        pc, client = peer.pc, peer.client_id
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            watch_peer(pc, client, lambda why: self._violated(peer, why))
            await pc.setLocalDescription(await pc.createAnswer())
        except PortRangeExhausted as exc:
            log.error(
                "Refused the offer of %s: %s; widen ice_port_range or lower max_peers", client, exc
            )
            await self._fail(
                peer, PeerRefusal.NO_PORTS, "the homelab has no free UDP port for this connection"
            )
            return
        except Exception as exc:  # aiortc raises various errors on an SDP it cannot use
            if self._peers.get(client) is not peer:
                return  # closed meanwhile (its deadline, a bye): nothing to answer
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await self._fail(
                peer, PeerRefusal.BAD_OFFER, f"aiortc could not use the offer ({detail})"
            )
            return
        if self._peers.get(client) is peer:
            answer = pc.localDescription.sdp
            proof = self._authorizer.prove_answer(peer.credential, sdp, answer)
            await self._send_signal(client, signals.answer(answer, proof.to_json()))

    def _violated(self, peer: Peer, why: str) -> None:
        self._tasks.spawn(self._fail(peer, PeerRefusal.PROTOCOL_VIOLATION, why))

    def _deadline_passed(self, peer: Peer) -> None:
        if self._peers.get(peer.client_id) is not peer or peer.connected:
            return
        timeout = self.limits.connect_timeout
        metrics.PEERS_FAILED.labels("timeout").inc()
        self._tasks.spawn(
            self._fail(
                peer,
                PeerRefusal.TIMEOUT,
                f"it did not connect within {timeout:g} s (peer_connect_timeout)",
            )
        )

    async def _fail(self, peer: Peer, code: PeerRefusal, message: str) -> None:
        if self._peers.get(peer.client_id) is peer:
            del self._peers[peer.client_id]
            await self._close(peer, message, code=code)

    # --- candidates and channels -------------------------------------------------------

    async def _add_candidate(self, client: str, candidate: dict[str, Any]) -> None:
        peer = self._peers.get(client)
        if peer is None:
            log.debug("Ignored a candidate from %s: no peer connection", client)
            return
        text = str(candidate["candidate"]).removeprefix("candidate:")
        if not text:
            return  # end of candidates
        if peer.candidates >= signals.MAX_CANDIDATES:
            if peer.candidates == signals.MAX_CANDIDATES:
                log.warning(
                    "Ignored candidates of %s past the first %d (each one is checked)",
                    client,
                    signals.MAX_CANDIDATES,
                )
            peer.candidates += 1
            return
        peer.candidates += 1
        try:
            parsed = candidate_from_sdp(text)
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            await peer.pc.addIceCandidate(parsed)
        except Exception as exc:
            log.warning("Ignored a candidate from %s: %s", client, exc)

    def _on_channel(self, peer: Peer, channel: RTCDataChannel) -> None:
        # Runs inside aiortc's packet handling: an exception here would end the connection.
        if peer.channels >= self.limits.max_channels:
            self._refuse_channel(peer, channel)
            return
        forbidden = peer.credential.forbids(channel.label)
        if forbidden:
            self._forbid_channel(peer, channel, forbidden)
            return
        try:
            work = self._router.serve(channel, peer.client_id, peer.pair)
        except Exception:
            log.exception("Serving a channel of %s failed (a bug)", peer.client_id)
            return
        peer.channels += 1
        channel.on("close", peer.channel_closed)
        if work is not None:
            peer.tasks.spawn(work)

    def _forbid_channel(self, peer: Peer, channel: RTCDataChannel, why: str) -> None:
        credential = peer.credential
        log.warning(
            "Refused data channel %r from %s: the credential of %s does not list it (%s)",
            channel.label[:64],  # the peer's text: what reaches the log is short
            peer.client_id,
            credential.describe(),
            credential.scope(),
        )
        metrics.CHANNELS_REFUSED.labels(ChannelRefusal.FORBIDDEN.value).inc()
        refuse(channel, ChannelRefusal.FORBIDDEN, why, at_open=True)

    def _refuse_channel(self, peer: Peer, channel: RTCDataChannel) -> None:
        limit = self.limits.max_channels
        peer.channels_refused += 1
        if peer.channels_refused == 1:  # the rest are counted in the closing line
            log.warning(
                "Refused data channel %r from %s: it has %d channels open (max_channels_per_peer)",
                channel.label[:64],
                peer.client_id,
                limit,
            )
        metrics.CHANNELS_REFUSED.labels(ChannelRefusal.TOO_MANY_CHANNELS.value).inc()
        refuse(
            channel,
            ChannelRefusal.TOO_MANY_CHANNELS,
            f"this connection has {limit} data channels open already (max_channels_per_peer)",
            at_open=True,
        )

    def _on_state(self, peer: Peer) -> None:
        state = peer.pc.connectionState
        if state == "connected" and not peer.connected:
            peer.connected = True
            if peer.deadline is not None:
                peer.deadline.cancel()
            pair = selected_pair(peer.pc)
            if pair is not None:
                kind, local, remote = pair
                peer.pair = kind
                metrics.PEERS_CONNECTED.labels(kind).inc()
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
            if state == "failed":
                ice_failed = peer.pc.iceConnectionState == "failed"
                metrics.PEERS_FAILED.labels("ice" if ice_failed else "dtls").inc()
            self._tasks.spawn(self.drop(peer.client_id, f"its connection {state}"))

    # --- closing -----------------------------------------------------------------------

    async def recheck_credentials(self) -> None:
        """Close every peer whose credential was revoked or expired since it connected."""
        for client, peer in list(self._peers.items()):
            why = self._authorizer.still_valid(peer.credential)
            if why is not None and self._peers.get(client) is peer:
                del self._peers[client]
                await self._close(peer, why, code=PeerRefusal.UNAUTHORIZED)

    async def drop(self, client: str, why: str) -> None:
        peer = self._peers.pop(client, None)
        if peer is not None:
            await self._close(peer, why)

    async def _close(self, peer: Peer, why: str, code: PeerRefusal | None = None) -> None:
        """Close a peer that is no longer in ``_peers``; ``code`` tells its client why."""
        refused = f"; refused {peer.channels_refused} channels" if peer.channels_refused else ""
        log.log(
            logging.WARNING if code else logging.INFO,
            "Peer %s: closing, %s (%d peers left%s)",
            peer.client_id,
            why,
            len(self._peers),
            refused,
        )
        if peer.deadline is not None:
            peer.deadline.cancel()
        if code is not None:
            await self._refuse(peer.client_id, code, why)
        await peer.tasks.cancel()
        with contextlib.suppress(Exception):
            await peer.pc.close()
        log.debug("Peer %s: closed, its sockets released", peer.client_id)

    async def close_all(self) -> None:
        await self._inbox.close()
        for client in list(self._peers):
            await self.drop(client, "the daemon is stopping")
        await self._tasks.cancel()
