"""``homelab-p2p forward``, ``pipe`` and ``fetch``: reach a service of the homelab."""

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from homelab_p2p.client import BridgeClient, ClientError, ClientOptions
from homelab_p2p.httpclient import ChannelRequest, HttpExchangeError
from p2p_webrtc import install
from p2p_webrtc.channels import ChannelBridge

log = logging.getLogger("homelab_p2p.client")


def report(error: ClientError) -> None:
    prefix = (
        ""
        if error.step == "signaling" and str(error).startswith("The target")
        else f"{error.step}: "
    )
    print(f"homelab-p2p: {prefix}{error}", file=sys.stderr)


def _install(options: ClientOptions) -> None:
    """The process's WebRTC seams, and a log line saying what runs (``-v`` shows it)."""
    data_path = install(options.ice, options.data_path)
    log.info("%s; %s", options.ice.describe(), data_path.describe())


async def forward(options: ClientOptions, service: str, host: str, port: int) -> int:
    """Each TCP connection accepted on host:port becomes a data channel to ``service``."""
    _install(options)
    client = BridgeClient(options)
    try:
        await client.connect()  # fail now, not at the first connection, if the homelab is away
    except ClientError as exc:
        report(exc)
        return 1
    bridges: set[asyncio.Task[None]] = set()

    def refused(error: str, message: str) -> None:
        log.error("The homelab closed %r (%s): %s", service, error, message)

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            channel_bridge = await client.open_service(
                service, lambda channel: ChannelBridge(channel, on_control=refused)
            )
        except ClientError as exc:
            log.error("A connection to %r failed at the %s step: %s", service, exc.step, exc)
            writer.close()
            return
        await channel_bridge.run(reader, writer)

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(bridge(reader, writer))
        bridges.add(task)
        task.add_done_callback(bridges.discard)

    try:
        server = await asyncio.start_server(accept, host, port)
    except OSError as exc:
        print(
            f"homelab-p2p: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr
        )
        await client.close()
        return 1
    bound = server.sockets[0].getsockname()
    print(f"Forwarding {bound[0]}:{bound[1]} to {service!r} on {options.target!r}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    for task in list(bridges):
        task.cancel()
    await asyncio.gather(*bridges, return_exceptions=True)
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
        print(
            f"homelab-p2p: pipe needs stdin and stdout to be pipes or sockets: {exc}",
            file=sys.stderr,
        )
        await client.close()
        return 2
    with contextlib.suppress(ConnectionError):
        await bridge.run(reader, writer)
    await client.close()
    if refusals:
        print(f"homelab-p2p: the homelab closed {service!r}: {refusals[0]}", file=sys.stderr)
        return 1
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
        print(f"homelab-p2p: {service!r}: {exc}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(
            f"homelab-p2p: {service!r}: the connection to the homelab ended: {exc}", file=sys.stderr
        )
        return 1
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
