"""``homelab-p2p forward``, ``pipe`` and ``fetch``: reach a service of the homelab.

``pipe`` and ``fetch`` run the same here and in the client agent (agent.py): there the
``BridgeClient`` is the agent's warm one and the ``Terminal`` is the caller's stdio.
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

from homelab_p2p import agentwire
from homelab_p2p.client import BridgeClient, ClientError, ClientOptions
from homelab_p2p.fetchrequest import FetchRequest
from homelab_p2p.httpclient import ChannelRequest, HttpExchangeError
from homelab_p2p.terminal import PROCESS_STDIO, Output, Terminal
from p2p_protocol.messages import ErrorCode
from p2p_runtime.stop import run_until_signalled, stop_on_signal
from p2p_runtime.tasks import OwnedTasks
from p2p_webrtc import install
from p2p_webrtc.channels import ChannelBridge

log = logging.getLogger("homelab_p2p.client")


def report(error: ClientError, terminal: Terminal = PROCESS_STDIO) -> int:
    # The guide's own message stands alone, as the guide prints it.
    prefix = "" if error.code is ErrorCode.BACKEND_UNREACHABLE else f"{error.step}: "
    return terminal.fail(f"{prefix}{error}")


def install_seams(options: ClientOptions) -> None:
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
    """Bridges each accepted TCP connection to a data channel of its own to one service:
    through the client agent when ``agent_argv`` is given and one runs, else itself."""

    def __init__(self, client: BridgeClient, service: str, agent_argv: list[str] | None) -> None:
        self._client = client
        self._service = service
        self._agent_argv = agent_argv
        self.bridges = OwnedTasks(log, f"Forwarding a connection to {service!r}")

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Called from connection_made, before any byte was read: a connection handed to the
        # agent must reach it whole.
        if self._agent_argv is not None:
            writer.transport.pause_reading()  # type: ignore[attr-defined]
        self.bridges.spawn(self._bridge(reader, writer))

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._agent_argv is not None:
            if await hand_to_agent(writer, self._agent_argv):
                return
            writer.transport.resume_reading()  # type: ignore[attr-defined]
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


async def hand_to_agent(writer: asyncio.StreamWriter, argv: list[str]) -> bool:
    """Hands the connection to the running client agent as a ``pipe`` (its messages go to our
    stderr) and waits until it is done; False when no agent took it: it is still ours."""
    loop = asyncio.get_running_loop()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.setblocking(False)
    with conn:
        try:
            await loop.sock_connect(conn, agentwire.socket_path())
            connection = writer.get_extra_info("socket").fileno()
            request = agentwire.encode_request(argv, command="pipe")
            agentwire.send_request(conn, request, (connection, connection, 2))
        except OSError:
            return False
        answer = b""
        with contextlib.suppress(OSError):
            while not answer.endswith(b"\n") and len(answer) <= agentwire.MAX_ANSWER_BYTES:
                chunk = await loop.sock_recv(conn, agentwire.MAX_ANSWER_BYTES)
                if not chunk:
                    break
                answer += chunk
    try:
        status = agentwire.parse_answer(answer)
    except agentwire.AgentWireError as exc:
        log.error("The client agent failed a connection to %r: %s", argv[1:2], exc)
        status = 1
    if status is None:
        return False  # it would not take it (too busy, say): ours to serve, unread so far
    writer.transport.abort()  # the agent is done with it; this is the last copy
    return True


async def forward(
    options: ClientOptions,
    service: str,
    host: str,
    port: int,
    agent_argv: list[str] | None = None,
) -> int:
    """Each TCP connection accepted on host:port becomes a data channel to ``service``;
    through the client agent if one runs, when ``agent_argv`` (this command line) is given."""
    install_seams(options)
    client = BridgeClient(options)
    try:
        client.check_scope(service)  # fail now, not at each connection, if it is not allowed
        await client.connect()  # fail now, not at the first connection, if the homelab is away
    except ClientError as exc:
        return report(exc)
    if agent_argv is not None:
        await client.close()  # the agent's connection carries the connections from now on
    forwarder = _Forwarder(client, service, agent_argv)
    try:
        server = await asyncio.start_server(forwarder.accept, host, port)
    except OSError as exc:
        await client.close()
        return PROCESS_STDIO.fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    stop = stop_on_signal()
    bound = server.sockets[0].getsockname()
    print(f"Forwarding {bound[0]}:{bound[1]} to {service!r} on {options.target!r}", flush=True)
    await stop.wait()
    server.close()
    await forwarder.bridges.cancel()
    await client.close()
    return 0


@contextlib.asynccontextmanager
async def _connection(
    options: ClientOptions, client: BridgeClient | None
) -> AsyncIterator[BridgeClient]:
    """``client`` (the agent's: left open), or a new one for this command, closed after it."""
    if client is not None:
        yield client
        return
    install_seams(options)
    own = BridgeClient(options)
    try:
        yield own
    finally:
        await own.close()


async def pipe(
    options: ClientOptions,
    service: str,
    client: BridgeClient | None = None,
    terminal: Terminal = PROCESS_STDIO,
) -> int:
    """stdin/stdout to ``service``: ``ssh -o ProxyCommand='homelab-p2p pipe ssh' user@homelab``.

    ``client``: a connection to reuse (the agent's); without one, a new one."""

    async def run() -> int:
        async with _connection(options, client) as connection:
            return await _pipe(connection, service, terminal)

    if client is not None:  # the agent's: its caller going away cancels this
        return await run()
    # ssh ends its ProxyCommand with SIGHUP: close the connection and say bye even then.
    return await run_until_signalled(run())


async def _pipe(client: BridgeClient, service: str, terminal: Terminal) -> int:
    refusals: list[str] = []
    try:
        bridge = await client.open_service(
            service,
            lambda channel: ChannelBridge(
                channel, on_control=lambda error, message: refusals.append(message)
            ),
        )
    except ClientError as exc:
        return report(exc, terminal)
    try:
        reader, writer = await terminal.streams()
    except (OSError, ValueError) as exc:
        bridge.discard()
        bridge.channel.close()
        return terminal.fail(f"pipe needs stdin and stdout to be pipes or sockets: {exc}", 2)
    try:
        await _bridge_stream(bridge, reader, writer, service)
    finally:
        if bridge.channel.readyState == "open":  # cancelled: the agent's caller went away
            bridge.channel.close()
    if refusals:
        return terminal.fail(f"the homelab closed {service!r}: {refusals[0]}")
    return 0


async def fetch(
    options: ClientOptions,
    service: str,
    request: FetchRequest,
    client: BridgeClient | None = None,
    terminal: Terminal = PROCESS_STDIO,
) -> int:
    """One HTTP request to an ``http://`` service, curl-like: the body to stdout or a file.

    ``client``: a connection to reuse (the agent's); without one, a new one."""
    async with _connection(options, client) as connection:
        return await _fetch(connection, service, request, terminal)


async def _fetch(
    client: BridgeClient, service: str, request: FetchRequest, terminal: Terminal
) -> int:
    try:
        exchange = await client.open_service(service, ChannelRequest)
        try:
            await exchange.send(request.method, request.path, request.headers, request.body)
            head, body = await exchange.response()
            out = Output.to_file(request.output) if request.output else await terminal.output()
            try:
                if request.include:
                    lines = [
                        f"HTTP {head.status} {head.status_text}",
                        *(f"{k}: {v}" for k, v in head.headers),
                        "",
                        "",
                    ]
                    await out.write("\r\n".join(lines).encode())
                async for chunk in body:
                    await out.write(chunk)
            finally:
                await out.close()
        finally:
            exchange.close()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as curl does, with its status 23.
        return 23
    except ClientError as exc:
        return report(exc, terminal)
    except HttpExchangeError as exc:
        return terminal.fail(f"{service!r}: {exc}")
    except ConnectionError as exc:
        return terminal.fail(f"{service!r}: the connection to the homelab ended: {exc}")
    except OSError as exc:
        return terminal.fail(f"cannot write {request.output}: {exc.strerror or exc}")
    return 22 if request.fail and head.status >= 400 else 0
