"""``homelab-p2p forward``, ``pipe`` and ``fetch``: reach a service of the homelab."""

import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from homelab_p2p.client import BridgeClient, ClientError, ClientOptions
from homelab_p2p.httpclient import ChannelRequest, HttpExchangeError
from homelab_p2p.output import fail
from p2p_protocol.messages import ErrorCode
from p2p_runtime.stop import stop_on_signal
from p2p_runtime.tasks import OwnedTasks
from p2p_webrtc import install
from p2p_webrtc.channels import ChannelBridge

log = logging.getLogger("homelab_p2p.client")


def report(error: ClientError) -> None:
    # The guide's own message stands alone, as the guide prints it.
    prefix = "" if error.code is ErrorCode.BACKEND_UNREACHABLE else f"{error.step}: "
    fail(f"{prefix}{error}")


def _install(options: ClientOptions) -> None:
    """The process's WebRTC seams, and a log line saying what runs (``-v`` shows it)."""
    installed = install(options.ice, options.data_path)
    log.info("%s; %s", installed.policy.describe(), installed.data_path.describe())


async def _bridge_stream(
    bridge: ChannelBridge,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    service: str,
) -> None:
    """Bridge one stream to its channel; a stream the bridge had to reset is worth a line."""
    with contextlib.suppress(ConnectionError):
        await bridge.run(reader, writer)
    if bridge.reset:
        log.warning("A connection to %r %s; it was reset", service, bridge.reset)


class _Forwarder:
    """Bridges each accepted TCP connection to a data channel of its own to one service."""

    def __init__(self, client: BridgeClient, service: str) -> None:
        self._client = client
        self._service = service
        self.bridges = OwnedTasks(log, f"Forwarding a connection to {service!r}")

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.bridges.spawn(self._bridge(reader, writer))

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            channel_bridge = await self._client.open_service(
                self._service, lambda channel: ChannelBridge(channel, on_control=self._refused)
            )
        except ClientError as exc:
            log.error("A connection to %r failed at the %s step: %s", self._service, exc.step, exc)
            writer.close()
            return
        await _bridge_stream(channel_bridge, reader, writer, self._service)

    def _refused(self, error: str, message: str) -> None:
        log.error("The homelab closed %r (%s): %s", self._service, error, message)


async def forward(options: ClientOptions, service: str, host: str, port: int) -> int:
    """Each TCP connection accepted on host:port becomes a data channel to ``service``."""
    _install(options)
    client = BridgeClient(options)
    try:
        client.check_scope(service)  # fail now, not at each connection, if it is not allowed
        await client.connect()  # fail now, not at the first connection, if the homelab is away
    except ClientError as exc:
        report(exc)
        return 1
    forwarder = _Forwarder(client, service)
    try:
        server = await asyncio.start_server(forwarder.accept, host, port)
    except OSError as exc:
        await client.close()
        return fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    stop = stop_on_signal()
    bound = server.sockets[0].getsockname()
    print(f"Forwarding {bound[0]}:{bound[1]} to {service!r} on {options.target!r}", flush=True)
    await stop.wait()
    server.close()
    await forwarder.bridges.cancel()
    await client.close()
    return 0


async def _stdio() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def pipe(options: ClientOptions, service: str) -> int:
    """stdin/stdout to ``service``: ``ssh -o ProxyCommand='homelab-p2p pipe ssh' user@homelab``."""
    _install(options)
    client = BridgeClient(options)
    refusals: list[str] = []
    try:
        bridge = await client.open_service(
            service,
            lambda channel: ChannelBridge(
                channel, on_control=lambda error, message: refusals.append(message)
            ),
        )
    except ClientError as exc:
        report(exc)
        return 1
    try:
        reader, writer = await _stdio()
    except (OSError, ValueError) as exc:
        await client.close()
        return fail(f"pipe needs stdin and stdout to be pipes or sockets: {exc}", status=2)
    await _bridge_stream(bridge, reader, writer, service)
    await client.close()
    if refusals:
        return fail(f"the homelab closed {service!r}: {refusals[0]}")
    return 0


async def fetch(
    options: ClientOptions,
    service: str,
    request: "FetchRequest",
) -> int:
    """One HTTP request to an ``http://`` service, curl-like: the body to stdout or a file."""
    _install(options)
    client = BridgeClient(options)
    try:
        exchange = await client.open_service(service, ChannelRequest)
        await exchange.send(request.method, request.path, request.headers, request.body)
        head, body = await exchange.response()
        status = head.status
        out = request.output.open("wb") if request.output else sys.stdout.buffer
        try:
            if request.include:
                lines = [
                    f"HTTP {head.status} {head.status_text}",
                    *(f"{k}: {v}" for k, v in head.headers),
                    "",
                    "",
                ]
                out.write("\r\n".join(lines).encode())
            async for chunk in body:
                out.write(chunk)
        finally:
            if request.output:
                out.close()
            else:
                out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as curl does, with its status 23.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 23
    except ClientError as exc:
        report(exc)
        return 1
    except HttpExchangeError as exc:
        return fail(f"{service!r}: {exc}")
    except ConnectionError as exc:
        return fail(f"{service!r}: the connection to the homelab ended: {exc}")
    finally:
        await client.close()
    return 22 if request.fail and status >= 400 else 0


@dataclass(frozen=True)
class FetchRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    output: Path | None = None
    include: bool = False
    fail: bool = False
