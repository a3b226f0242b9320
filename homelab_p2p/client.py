"""The client side of the bridge: one peer connection to a homelab, opened on first use.

``BridgeClient.open_service(label, attach)`` opens a data channel to that service of the
target homelab, with ``attach`` listening on it from the start. The first call
negotiates: it connects to signaling, offers, waits for the answer, then for ICE, DTLS
and an ``echo`` probe channel, each step within the timeout; a failure says which step
failed and what to do. A later call after the peer connection failed or closed
negotiates again. The signaling link a connection was offered over stays open while it
lives: closing the connection says ``bye`` there, and the homelab drops its peer at once.

Falling forward: while the connection is relayed through TURN, the client tries a direct
one in the background, one attempt at a time and ``fall_forward`` seconds apart (a peer
connection without TURN servers, the homelab's relayed candidates left out of its answer).
Once one connects, new channels open on it; the relayed connection closes when its last
channel ends. The homelab needs nothing for this: each negotiation is a peer of its own there.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from websockets.exceptions import ConnectionClosed

from homelab_p2p.authenticate import check_answer, offer_signal
from p2p_protocol import signals
from p2p_protocol.identity import IdentityError
from p2p_protocol.messages import BACKEND_UNREACHABLE_MESSAGE, ErrorCode, error_code
from p2p_protocol.names import ECHO_LABEL
from p2p_runtime.identity import Credential, expiry_text
from p2p_runtime.tasks import OwnedTasks
from p2p_webrtc import IcePolicy, new_peer_connection, selected_pair, without_relay_candidates
from p2p_webrtc.datapath import DataPathOptions
from signaling_client.link import Link, SignalingError

T = TypeVar("T")
log = logging.getLogger("homelab_p2p.client")

PROBE_LABEL = ECHO_LABEL
REUSED_CHANNEL_TIMEOUT = 5.0
"""A channel on an established connection opens in one round trip; if it does not open
within this, the homelab is taken to be gone (crashed, cut off) and a new connection is made."""
BYE_TIMEOUT = 2.0
"""How long closing a connection may spend saying ``bye`` and waiting for the homelab to close
its end: a client that exits must not hang on a slow signaling service or a homelab that is
gone. Without the bye the homelab still learns it, from DTLS's close_notify or, when that
does not get through, ICE consent (~30 s); a peer still connecting only at its deadline."""


class ClientStep(StrEnum):
    """The steps of reaching a homelab, as a failure names them (``ICE: ...``)."""

    SIGNALING = "signaling"
    IDENTITY = "identity"
    ICE = "ICE"
    DTLS = "DTLS"
    CHANNEL = "channel"


class ClientError(Exception):
    """A step of reaching the homelab failed; ``step`` names it, str() says why and what to do.

    ``code`` is the signaling service's error code when the failure is its error reply.
    """

    def __init__(self, step: ClientStep, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.code = code


class ChannelRefused(ClientError):
    """The homelab closed a channel as it opened (a refusal: the channel's reader has why)."""


class TargetNotConnected(ClientError):
    """The guide's first row: no homelab is registered under the target name."""

    def __init__(self, target: str) -> None:
        super().__init__(
            ClientStep.SIGNALING,
            f"{BACKEND_UNREACHABLE_MESSAGE}\n"
            f"  Cause: no homelab_server is running and registered as {target!r}.\n"
            "  Solution: start homelab_server and verify it connects to signaling "
            "(ps aux | grep homelab_server; journalctl -u homelab-p2p-bridge -f, and look for "
            f"\"Registered as '{target}'\").",
            ErrorCode.BACKEND_UNREACHABLE,
        )


def ice_failure(timeout: float) -> ClientError:
    return ClientError(
        ClientStep.ICE,
        f"WebRTC connection timeout: no network path to the homelab within {timeout:g} s.\n"
        "  Cause: NAT traversal or a firewall (both sides may be behind NATs that need a relay).\n"
        "  Solution: check that the STUN servers answer, configure a TURN server "
        "(--ice-server turn:... with --ice-username/--ice-credential) and let UDP through the "
        "homelab's firewall (its ice_port_range).",
    )


@dataclass(frozen=True)
class ClientOptions:
    signaling_url: str
    token: str
    target: str
    credential: Credential | None
    """Who the client is to the homelab; None only for what talks to signaling alone (echo)."""
    ice: IcePolicy
    timeout: float = 20.0
    relay_only: bool = False
    data_path: DataPathOptions = field(default_factory=DataPathOptions)
    fall_forward: float = 30.0
    """Seconds between attempts at a direct path while relayed; 0 never tries."""


class Negotiation:
    """What signaling brings during one negotiation: the answer, or a refusal after it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.answer: asyncio.Future[signals.Signal] = asyncio.get_running_loop().create_future()
        self.refusal: signals.Signal | None = None
        """An error signal the homelab sent after its answer (its place was taken, ...)."""
        self.progress = asyncio.Event()
        """Set when the connection being negotiated changes state or is refused."""

    async def on_signal(self, sender: str, data: Any) -> None:
        signal = signals.parse_or_ignore(sender, data, log)
        if signal is None or signal.type not in ("answer", "error"):
            return
        if not self.answer.done():
            self.answer.set_result(signal)
        elif signal.type == "error":
            self.refusal = signal
            self.progress.set()

    async def on_error(self, message: dict[str, Any]) -> None:
        if self.answer.done():
            return
        code = error_code(message)
        if code is ErrorCode.BACKEND_UNREACHABLE:
            self.answer.set_exception(TargetNotConnected(self.target))
        else:
            text = message.get("message") or message.get("error")
            self.answer.set_exception(
                ClientError(ClientStep.SIGNALING, f"the signaling service answered: {text}", code)
            )


class BridgeClient:
    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.pc: RTCPeerConnection | None = None
        self._lock = asyncio.Lock()
        self._fresh: RTCPeerConnection | None = None  # negotiated for the call under way
        self._channels: dict[RTCPeerConnection, int] = {}
        """Open channels per connection, so a relayed one left behind closes after its last."""
        self._draining: set[RTCPeerConnection] = set()
        self._links: dict[RTCPeerConnection, Link] = {}
        """The signaling link each connection was offered over, open while it lives: the homelab
        knows the client by that link's id, so a ``bye`` must come over it."""
        self._background = OwnedTasks(log, "Looking for a direct path")
        self._drains = OwnedTasks(log, "Closing a drained connection")

    async def open_service(self, label: str, attach: Callable[[RTCDataChannel], T]) -> T:
        """``attach(channel)`` for a data channel to ``label``, returned once the channel opened.

        ``attach`` runs as soon as the channel exists: the homelab may send a message (a
        refusal, say) and close the channel in the same moment it opens, and datagrams are
        handled in batches, so whatever reads the channel must listen before it opens.
        """
        self.check_scope(label)
        pc = await self.connect()
        reused = pc is not self._fresh
        self._fresh = None
        channel = pc.createDataChannel(label)
        self._count_channel(pc, channel)
        attached = attach(channel)
        try:
            await self._wait_open(channel, label, REUSED_CHANNEL_TIMEOUT if reused else None)
        except ClientError as exc:
            if not reused or isinstance(exc, ChannelRefused):  # a refusal is an answer
                raise
            log.info("The peer connection stopped answering; negotiating a new one")
            await self._discard(pc)
            return await self.open_service(label, attach)
        pair = selected_pair(pc)
        log.info("Channel %r opened over %s", label, pair[0] if pair else "an unknown path")
        return attached

    def pair_type(self) -> str | None:
        """host, srflx or relay: the path new channels take now (None before connecting)."""
        pair = selected_pair(self.pc) if self.pc is not None else None
        return pair[0] if pair else None

    def _count_channel(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        self._channels[pc] = self._channels.get(pc, 0) + 1

        def closed() -> None:
            if pc not in self._channels:  # the connection was let go already
                return
            self._channels[pc] -= 1
            if pc in self._draining and self._channels[pc] == 0:
                self._drains.spawn(self._close_drained(pc))

        channel.on("close", closed)

    async def _close_drained(self, pc: RTCPeerConnection) -> None:
        log.info("The relayed connection's last channel ended; closing it")
        await self._let_go(pc)

    def check_scope(self, label: str) -> None:
        """ClientError (forbidden) when the credential does not list ``label``: the homelab
        would refuse it, and a refusal can be lost when the client closes first (``pipe``
        whose stdin ends at once), so the client says it without asking."""
        credential = self.options.credential
        forbidden = credential.certificate.forbids(label) if credential is not None else ""
        if forbidden:
            raise ClientError(ClientStep.CHANNEL, forbidden)

    async def _discard(self, pc: RTCPeerConnection) -> None:
        async with self._lock:
            if self.pc is pc:
                self.pc = None
        await self._let_go(pc, wait_for_homelab=False)  # it stopped answering

    async def _let_go(self, pc: RTCPeerConnection, wait_for_homelab: bool = True) -> None:
        """Close ``pc`` and forget it (a long-lived agent reconnects many times)."""
        self._channels.pop(pc, None)
        self._draining.discard(pc)
        await self._close(pc, wait_for_homelab)

    async def _close(self, pc: RTCPeerConnection, wait_for_homelab: bool = True) -> None:
        """Close ``pc`` and its link, saying bye first so the homelab drops its peer at once.

        ``wait_for_homelab``: after the bye, let the homelab close its end of a connected
        ``pc`` first; closing ours at once would race the bye with DTLS's close_notify, which
        takes the direct path and wins (the homelab then drops it for that instead)."""
        link = self._links.pop(pc, None)
        try:
            if link is not None:
                await self._say_bye(link, pc if wait_for_homelab else None)
        finally:  # also when cancelled (close() cancels a drain under way): nothing stays open
            if link is not None:
                await link.close()
            await pc.close()

    async def _say_bye(self, link: Link, pc: RTCPeerConnection | None) -> None:
        """Sends ``bye`` over ``link`` and waits for the homelab to close its end of ``pc``
        if connected, best effort within ``BYE_TIMEOUT``. A link that signaling closed already
        (API Gateway's 10-minute idle timeout) cannot carry it: the homelab learns it as
        without a bye."""
        if link.closed.is_set():
            return
        bye = {"action": "sendSignal", "to": self.options.target, "data": {"type": "bye"}}
        try:
            async with asyncio.timeout(BYE_TIMEOUT):
                await link.send(bye)
                if pc is not None and pc.connectionState == "connected":
                    await _closed(pc)
        except (SignalingError, TimeoutError, ConnectionClosed) as exc:
            log.debug("Saying bye to %r: %s", self.options.target, str(exc) or type(exc).__name__)

    async def connect(self) -> RTCPeerConnection:
        """The peer connection, negotiated now if there is none or the last one failed."""
        async with self._lock:
            if self.pc is not None and self.pc.connectionState not in ("failed", "closed"):
                return self.pc
            if self.pc is not None:
                log.info("The peer connection %s; negotiating a new one", self.pc.connectionState)
                await self._let_go(self.pc)
            self.pc = self._fresh = await self._negotiate()
            if self.pair_type() == "relay" and self.options.fall_forward > 0:
                self._background.spawn(self._fall_forward(self.pc))
            return self.pc

    async def close(self) -> None:
        """Close every connection, each saying bye; safe to call again."""
        await self._background.cancel()
        await self._drains.wait()  # not cancelled: each is short, and its bye would be cut off
        # _links too: one still negotiating, or a direct one whose fall forward was cancelled.
        current = [self.pc] if self.pc is not None else []
        closing = dict.fromkeys([*self._draining, *current, *self._links])
        # Forgotten first: a channel the homelab closes meanwhile must not start a drain.
        self._draining.clear()
        self._channels.clear()
        self.pc = None
        for pc in closing:
            await self._close(pc)

    async def _fall_forward(self, relayed: RTCPeerConnection) -> None:
        """Tries a direct path every ``fall_forward`` seconds while ``relayed`` is in use."""
        interval = self.options.fall_forward
        relayed_since = time.monotonic()
        while True:
            await asyncio.sleep(interval)  # the bounded rate, not a wait for anything
            if self.pc is not relayed or relayed.connectionState != "connected":
                return
            try:
                direct = await self._negotiate(direct_only=True)
            except ClientError as exc:
                log.info(
                    "No direct path yet (%s: %s); trying again in %g s",
                    exc.step,
                    str(exc).splitlines()[0],
                    interval,
                )
                continue
            async with self._lock:
                if self.pc is not relayed:  # replaced meanwhile (it failed, or we closed)
                    await self._close(direct)
                    return
                self.pc = direct
                if self._channels.get(relayed, 0) > 0:
                    self._draining.add(relayed)
                else:
                    await self._let_go(relayed)
            log.info(
                "Fell forward to a direct path (%s) after %.1f s relayed; new channels go "
                "direct, the relayed connection closes when its last channel ends",
                self.pair_type(),
                time.monotonic() - relayed_since,
            )
            return

    async def _negotiate(self, direct_only: bool = False) -> RTCPeerConnection:
        """A connected peer connection; ``direct_only``: one that cannot use a relay."""
        options = self.options
        credential = options.credential
        if credential is None:
            raise ClientError(
                ClientStep.IDENTITY,
                "no credential: pass --credential-file; the operator issues one "
                "(`homelab-p2p credential issue`, docs/security.md)",
            )
        started = time.monotonic()
        try:
            negotiation = Negotiation(options.target)
            link = await Link.open(
                options.signaling_url, options.token, negotiation.on_signal, negotiation.on_error
            )
        except SignalingError as exc:
            raise ClientError(ClientStep.SIGNALING, str(exc), exc.code) from None
        pc = new_peer_connection(
            options.ice, relay_only=options.relay_only, direct_only=direct_only
        )
        try:
            probe = pc.createDataChannel(PROBE_LABEL)
            await pc.setLocalDescription(await pc.createOffer())
            offer = pc.localDescription.sdp
            try:
                await link.send(
                    {
                        "action": "sendSignal",
                        "to": options.target,
                        "data": offer_signal(credential, options.target, offer),
                    }
                )
            except SignalingError as exc:
                raise ClientError(
                    ClientStep.SIGNALING, f"sending the offer: {exc}", exc.code
                ) from None
            self._links[pc] = link  # the homelab has a peer for it now: closing says bye
            answer = await self._wait_answer(negotiation, link)
            self._check_answer(credential, offer, answer)
            remote = without_relay_candidates(answer.sdp) if direct_only else answer.sdp
            await pc.setRemoteDescription(RTCSessionDescription(sdp=remote, type="answer"))
            await self._wait_connected(pc, negotiation)
            await self._wait_open(probe, PROBE_LABEL)
        except BaseException:
            # The bye drops the homelab's half-made peer at once, not at its connect deadline.
            await self._close(pc, wait_for_homelab=False)
            await link.close()  # when the offer did not go out (_close closed it if it did)
            raise
        pair = selected_pair(pc)
        log.info(
            "Connected to %r in %.2f s over %s",
            options.target,
            time.monotonic() - started,
            pair[0] if pair else "an unknown path",
        )
        return pc

    async def _wait_answer(self, negotiation: "Negotiation", link: Link) -> signals.Signal:
        # The link closing (signaling restarted, or dropped us) ends the wait: no answer can
        # come on it, and the timeout's message would blame the homelab.
        link_closed = asyncio.create_task(link.closed.wait())
        waits: list[asyncio.Future[Any]] = [negotiation.answer, link_closed]
        try:
            await asyncio.wait(
                waits,
                timeout=self.options.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            link_closed.cancel()
        if link_closed.done() and not negotiation.answer.done():
            raise ClientError(
                ClientStep.SIGNALING,
                f"the signaling connection closed before {self.options.target!r} answered the "
                "offer; check that the signaling service is up (homelab-p2p doctor) and try again",
            )
        if not negotiation.answer.done():
            raise ClientError(
                ClientStep.SIGNALING,
                f"the homelab {self.options.target!r} did not answer the offer within "
                f"{self.options.timeout:g} s; check its log (journalctl -u homelab-p2p-bridge)",
            )
        signal = negotiation.answer.result()
        if signal.type == "error":
            raise ClientError(
                ClientStep.SIGNALING,
                f"the homelab refused the connection ({signal.code}): {signal.message}",
            )
        return signal

    def _check_answer(self, credential: Credential, offer: str, answer: signals.Signal) -> None:
        target = self.options.target
        try:
            homelab = check_answer(credential, target, offer, answer)
        except IdentityError as exc:
            raise ClientError(
                ClientStep.IDENTITY,
                f"the answer is not from homelab {target!r}: {exc}. Nothing was sent to it. "
                "If this repeats, the signaling service (or something on its path) is forging "
                "answers; tell the operator.",
            ) from None
        log.info(
            "Verified the homelab's identity: %s, certified by the operator until %s",
            homelab.describe(),
            expiry_text(homelab.expires_at),
        )

    async def _wait_connected(self, pc: RTCPeerConnection, negotiation: "Negotiation") -> None:
        changed = negotiation.progress
        pc.on("connectionstatechange", changed.set)
        pc.on("iceconnectionstatechange", changed.set)
        deadline = time.monotonic() + self.options.timeout
        while pc.connectionState != "connected":
            refusal = negotiation.refusal
            if refusal is not None:
                raise ClientError(
                    ClientStep.SIGNALING,
                    f"the homelab closed the connection before it was up "
                    f"({refusal.code}): {refusal.message}",
                )
            if pc.connectionState in ("failed", "closed") or time.monotonic() >= deadline:
                if pc.iceConnectionState not in ("completed", "connected"):
                    raise ice_failure(self.options.timeout)
                raise ClientError(
                    ClientStep.DTLS,
                    "the DTLS handshake with the homelab failed after ICE connected; the homelab's "
                    "log says why (journalctl -u homelab-p2p-bridge)",
                )
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await changed.wait()

    async def _wait_open(
        self, channel: RTCDataChannel, label: str, within: float | None = None
    ) -> None:
        if channel.readyState == "open":
            return
        limit = within or self.options.timeout
        opened, settled = False, asyncio.Event()

        def on_open() -> None:
            nonlocal opened
            opened = True
            settled.set()

        channel.on("open", on_open)
        channel.on("close", settled.set)
        try:
            async with asyncio.timeout(limit):
                await settled.wait()
        except TimeoutError:
            raise ClientError(
                ClientStep.CHANNEL, f"the data channel {label!r} did not open within {limit:g} s"
            ) from None
        if not opened:
            # Opened and closed at once is a refusal: its reader has the reason.
            raise ChannelRefused(
                ClientStep.CHANNEL, f"the data channel {label!r} closed as it opened"
            )


async def _closed(pc: RTCPeerConnection) -> None:
    """Returns once ``pc`` is closed or failed (the caller bounds the wait)."""
    ended = asyncio.Event()

    def changed() -> None:
        if pc.connectionState in ("closed", "failed"):
            ended.set()

    pc.on("connectionstatechange", changed)  # removed with the rest when pc closes
    changed()
    await ended.wait()
