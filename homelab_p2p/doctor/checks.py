"""The doctor's checks, in the guide's order: each one a line, ok, failed or skipped.

A failed check names the guide's row (error message, cause, solution). Later checks that
need an earlier one are skipped, saying which; the NAT checks (5, 6) need nothing and
always run.
"""

import asyncio
import contextlib
import re
import socket
import ssl
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from aiortc import RTCDataChannel

from homelab_p2p.client import (
    BridgeClient,
    ClientError,
    ClientOptions,
    ClientStep,
    TargetNotConnected,
)
from homelab_p2p.doctor import guide
from homelab_p2p.doctor.nat import stun_mappings, turn_allocation
from homelab_p2p.echo import echo_to_me
from p2p_protocol.messages import BACKEND_UNREACHABLE_MESSAGE, ErrorCode, is_internal_error
from p2p_protocol.names import ECHO_LABEL
from p2p_webrtc import install, selected_pair
from signaling_client.link import Link, SignalingError, SignalingRefused

API_GATEWAY_URL = re.compile(
    r"wss://(?P<api>[a-z0-9]+)\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<stage>[^/?#]+)"
)
UNKNOWN_FORMAT_CODES = frozenset({ErrorCode.INVALID_JSON, ErrorCode.UNKNOWN_ACTION})
"""Error codes whose text is the guide's "Unknown message format"."""


@dataclass
class Result:
    step: int
    name: str
    status: str  # ok, fail or skip
    detail: str
    row: guide.Row | None = None

    def as_dict(self) -> dict[str, Any]:
        found = {"step": self.step, "name": self.name, "status": self.status, "detail": self.detail}
        if self.row is not None:
            found["guide"] = {
                "error": self.row.error,
                "cause": self.row.cause,
                "solution": self.row.solution,
            }
        return found


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


class BadSignalingUrl(ValueError):
    """The signaling URL cannot be right; str() says why."""


def describe_signaling_url(url: str) -> str:
    """What ``url`` points at (API Gateway, a local gateway...), or BadSignalingUrl."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname or not parts.path.strip("/"):
        raise BadSignalingUrl(f"{url!r} is not ws[s]://HOST[:PORT]/STAGE")
    if api := API_GATEWAY_URL.fullmatch(url):
        return f"API Gateway WebSocket API {api['api']} in {api['region']}, stage {api['stage']}"
    if "amazonaws.com" in parts.hostname:
        raise BadSignalingUrl(
            f"{url} looks like AWS but not wss://<api-id>.execute-api.<region>.amazonaws.com/<stage>"
        )
    return "a local gateway" if parts.scheme == "ws" else "a WebSocket service"


async def _reach(host: str, port: int, tls: bool) -> list[str]:
    """Resolve ``host``, connect over TCP and, with ``tls``, over TLS: a note on each step."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    address = str(infos[0][4][0])
    started = time.monotonic()
    _, writer = await asyncio.open_connection(address, port)
    writer.close()
    steps = [f"{host} is {address}", f"TCP {_ms(started)}"]
    if tls:
        started = time.monotonic()
        _, writer = await asyncio.open_connection(
            address, port, ssl=ssl.create_default_context(), server_hostname=host
        )
        writer.close()
        steps.append(f"TLS {_ms(started)}")
    return steps


class Doctor:
    """Runs the checks for one client configuration; ``run`` yields them as they finish."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.timeout = options.timeout
        self._link: Link | None = None
        self._unsolicited: list[dict[str, Any]] = []
        self._target_alive = False

    async def run(self) -> list[Result]:
        results = []
        try:
            for check in (
                self.signaling_url,
                self.handshake,
                self.echo,
                self.target,
                self.stun,
                self.turn,
                self.webrtc,
            ):
                results.append(await check())
        finally:
            if self._link is not None:
                await self._link.close()
        return results

    # 1
    async def signaling_url(self) -> Result:
        name = "Signaling URL"
        url = self.options.signaling_url
        try:
            kind = describe_signaling_url(url)
        except BadSignalingUrl as exc:
            return Result(1, name, "fail", str(exc), guide.WEBSOCKET_FAILED)
        parts = urlsplit(url)
        host = str(parts.hostname)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        try:
            async with asyncio.timeout(self.timeout):
                steps = await _reach(host, port, tls=parts.scheme == "wss")
        except TimeoutError:
            detail = f"{kind}, but no answer within {self.timeout:g} s"
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            detail = f"{kind}, but {host}:{port}: {reason}"
        else:
            return Result(1, name, "ok", f"{kind}; {', '.join(steps)}")
        return Result(1, name, "fail", detail, guide.WEBSOCKET_FAILED)

    # 2
    async def handshake(self) -> Result:
        name = "WebSocket handshake"
        started = time.monotonic()

        async def keep(message: dict[str, Any]) -> None:
            self._unsolicited.append(message)

        async def ignore(_: str, __: Any) -> None:
            return None

        try:
            self._link = await Link.open(
                self.options.signaling_url, self.options.token, ignore, keep
            )
        except SignalingRefused as exc:
            # A 403 is API Gateway's answer to a wrong stage: the URL's row, not the token's.
            token_refused = exc.http_status == HTTPStatus.UNAUTHORIZED
            row = guide.TOKEN_REFUSED if token_refused else guide.WEBSOCKET_FAILED
            return Result(2, name, "fail", str(exc), row)
        except SignalingError as exc:
            return Result(2, name, "fail", str(exc), guide.WEBSOCKET_FAILED)
        return Result(2, name, "ok", f"the token was accepted; connected in {_ms(started)}")

    def _needs_link(self, step: int, name: str) -> Result | None:
        if self._link is None:
            return Result(step, name, "skip", "needs the WebSocket connection (step 2)")
        return None

    def _signaling_row(self, exc: SignalingError) -> guide.Row:
        if any(is_internal_error(m) for m in self._unsolicited):
            return guide.INTERNAL_ERROR
        if exc.code in UNKNOWN_FORMAT_CODES:
            return guide.UNKNOWN_FORMAT
        return guide.WEBSOCKET_FAILED

    # 3
    async def echo(self) -> Result:
        name = "Echo to me and identify"
        if skipped := self._needs_link(3, name):
            return skipped
        assert self._link is not None
        try:
            round_trip, connection_id = await echo_to_me(self._link, self.timeout)
        except SignalingError as exc:
            return Result(
                3, name, "fail", f"the echo did not come back: {exc}", self._signaling_row(exc)
            )
        return Result(
            3, name, "ok", f"round trip {round_trip * 1000:.0f} ms; connection id {connection_id}"
        )

    # 4
    async def target(self) -> Result:
        target = self.options.target
        name = f"Target {target!r} registered and alive"
        if skipped := self._needs_link(4, name):
            return skipped
        assert self._link is not None
        try:
            reply = await self._link.request(
                {"action": "sendSignal", "to": target, "data": {"type": "ping"}},
                lambda m: (
                    m.get("action") == "sendSignal"
                    and isinstance(m.get("data"), dict)
                    and m["data"].get("type") == "pong"
                ),
                within=self.timeout,
            )
        except SignalingRefused as exc:
            if exc.code is ErrorCode.BACKEND_UNREACHABLE:
                return Result(
                    4, name, "fail", BACKEND_UNREACHABLE_MESSAGE, guide.TARGET_NOT_CONNECTED
                )
            return Result(4, name, "fail", str(exc), self._signaling_row(exc))
        except SignalingError:
            return Result(
                4, name, "fail",
                f"signaling relayed the ping, but {target!r} did not answer within "
                f"{self.timeout:g} s (a homelab_server older than this client, or a stuck one)",
                guide.TARGET_NOT_CONNECTED,
            )  # fmt: skip
        self._target_alive = True
        data = reply["data"]
        return Result(
            4, name, "ok", f"answered; {data.get('peers')} of {data.get('max_peers')} peers in use"
        )

    # 5
    async def stun(self) -> Result:
        name = "STUN servers"
        servers = list(self.options.ice.stun_servers)
        if not servers:
            return Result(5, name, "skip", "none configured (host candidates only: the same LAN)")
        mappings = await stun_mappings(servers, self.timeout)
        silent = [m for m in mappings if m.address is None]
        seen = ", ".join(
            f"{m.server.host}:{m.server.port} -> "
            + (f"{m.address[0]}:{m.address[1]}" if m.address else m.error)
            for m in mappings
        )
        if silent:
            return Result(5, name, "fail", seen, guide.STUN_UNREACHABLE)
        if len({m.address for m in mappings}) > 1:
            has_turn = bool(self.options.ice.turn_servers)
            detail = f"{seen}; the mapping changes per server: symmetric NAT"
            if has_turn:
                return Result(5, name, "ok", f"{detail}, the configured TURN server will relay")
            return Result(
                5, name, "fail", f"{detail}, and no TURN server is configured", guide.SYMMETRIC_NAT
            )
        note = "" if len(mappings) > 1 else " (one server: cannot tell a symmetric NAT)"
        return Result(5, name, "ok", f"{seen}{note}")

    # 6
    async def turn(self) -> Result:
        name = "TURN allocation"
        servers = list(self.options.ice.turn_servers)
        if not servers:
            return Result(6, name, "skip", "no TURN server configured")
        found = []
        for server in servers:
            try:
                relayed = await turn_allocation(server, self.timeout)
            except TimeoutError:
                return Result(
                    6,
                    name,
                    "fail",
                    f"{server.describe()}: no allocation within {self.timeout:g} s",
                    guide.TURN_FAILED,
                )
            except Exception as exc:  # aioice raises its own TransactionFailed, OSError...
                return Result(6, name, "fail", f"{server.describe()}: {exc}", guide.TURN_FAILED)
            found.append(f"{server.describe()} relays from {relayed[0]}:{relayed[1]}")
        return Result(6, name, "ok", "; ".join(found))

    # 7
    async def webrtc(self) -> Result:
        name = "WebRTC to the echo channel"
        if not self._target_alive:
            return Result(7, name, "skip", "needs the target alive (step 4)")
        install(self.options.ice, self.options.data_path)
        client = BridgeClient(self.options)
        started = time.monotonic()
        try:
            answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def on_message(message: Any) -> None:
                if not answered.done():
                    answered.set_result(message)

            def listen(channel: RTCDataChannel) -> RTCDataChannel:
                channel.on("message", on_message)
                return channel

            channel = await client.open_service(ECHO_LABEL, listen)
            opened = _ms(started)
            pair = selected_pair(client.pc) if client.pc else None
            sent = time.monotonic()
            channel.send("doctor")
            async with asyncio.timeout(self.timeout):
                await answered
            round_trip = _ms(sent)
        except TargetNotConnected:
            return Result(7, name, "fail", BACKEND_UNREACHABLE_MESSAGE, guide.TARGET_NOT_CONNECTED)
        except ClientError as exc:
            row = (
                guide.WEBSOCKET_FAILED if exc.step is ClientStep.SIGNALING else guide.WEBRTC_TIMEOUT
            )
            return Result(7, name, "fail", f"{exc.step}: {exc}", row)
        except TimeoutError:
            return Result(
                7,
                name,
                "fail",
                f"the echo channel did not answer within {self.timeout:g} s",
                guide.WEBRTC_TIMEOUT,
            )
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        kind = f"{pair[0]} pair (local {pair[1]}, remote {pair[2]})" if pair else "an unknown pair"
        return Result(7, name, "ok", f"open in {opened} over a {kind}; round trip {round_trip}")
