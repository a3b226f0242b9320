"""``homelab-p2p agent``: one warm peer connection per target, for ``pipe``, ``fetch`` and
``forward`` (like ssh's ControlMaster).

It listens on a Unix socket (0600, in a directory of the user's only; agentwire.py). Each
request is a command line with the caller's stdio; the agent parses it with the CLI's own
parser, reads the configuration it names, and runs the command (commands.py) on the
session of those options, negotiated at its first use and kept open for the next. It
answers the exit status, and "fallback" for what it cannot serve: a command line that does
not parse (the caller prints the usage error itself), ``agent: off`` in the configuration,
or other ICE servers or data path than its own (both are process-wide in aiortc).

Limits (docs/client.md): ``MAX_REQUESTS`` commands at once, ``MAX_SESSIONS`` connections,
requests of ``agentwire.MAX_REQUEST_BYTES`` sent within ``REQUEST_TIMEOUT``, callers of the
same user only. It ends after ``idle_timeout`` seconds without a command.
"""

import argparse
import asyncio
import contextlib
import fcntl
import io
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab_p2p import agentwire, commands
from homelab_p2p.client import BridgeClient, ClientOptions
from homelab_p2p.clientconfig import agent_settings, client_options
from homelab_p2p.fetchrequest import FetchRequestError, fetch_request
from homelab_p2p.terminal import Terminal
from p2p_runtime.configfile import ConfigError
from p2p_runtime.tasks import OwnedTasks

log = logging.getLogger("homelab_p2p.agent")

MAX_REQUESTS = 64
MAX_SESSIONS = 8
REQUEST_TIMEOUT = 5.0

SessionKey = tuple[Any, ...]


def session_key(options: ClientOptions) -> SessionKey:
    """What makes two requests share a connection: the same homelab, reached the same way,
    as the same client (the credential's certificate; a renewed one gets a new session)."""
    credential = options.credential.certificate_text if options.credential else ""
    return (
        options.signaling_url,
        options.token,
        options.target,
        credential,
        options.ice,
        options.timeout,
        options.relay_only,
        options.data_path,
        options.fall_forward,
    )


@dataclass(frozen=True)
class Request:
    cwd: str
    command: str
    """What to run when not the command line's own: ``pipe`` (a connection ``forward``
    hands over), ``stop``, or empty."""
    argv: list[str]


class Agent:
    def __init__(self, path: Path, idle_timeout: float, parser: argparse.ArgumentParser) -> None:
        self.path = path
        self.idle_timeout = idle_timeout
        self._parser = parser
        self._sessions: dict[SessionKey, BridgeClient] = {}
        """In the order of their last use: the first is the one unused longest."""
        self._installed: tuple[Any, Any] | None = None
        self._requests = OwnedTasks(log, "Serving an agent request")
        self._busy = 0
        self._idle: asyncio.TimerHandle | None = None
        self.stopped = asyncio.Event()
        self._lock = -1

    # --- listening --------------------------------------------------------------------

    def listen(self) -> socket.socket:
        """The listening socket; OSError when it cannot be made, AgentRunning when another
        agent answers at the path already."""
        agentwire.prepare_directory(str(self.path))
        # One agent per socket: two started at once must not both bind (the second would
        # unlink the first's socket and leave it listening on nothing).
        self._lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise AgentRunning(self.path) from None
        other = agentwire.connect(str(self.path))
        if other is not None:  # one that holds no lock: an older version, say
            other.close()
            os.close(self._lock)
            raise AgentRunning(self.path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by an agent that did not end cleanly
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # 0600 from the start, no window
        try:
            server.bind(str(self.path))
        finally:
            os.umask(old_umask)
        server.listen(MAX_REQUESTS)
        server.setblocking(False)
        return server

    async def serve(self, server: socket.socket) -> None:
        """Serve until stopped (a signal, ``agent --stop`` or the idle timeout)."""
        loop = asyncio.get_running_loop()
        self._arm_idle_timer()
        accepting = asyncio.create_task(self._accept(loop, server))
        try:
            await self.stopped.wait()
        finally:
            accepting.cancel()
            await asyncio.gather(accepting, return_exceptions=True)
            server.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._lock)  # the next agent may start from here
            await self._requests.cancel()
            for client in self._sessions.values():
                await client.close()
            self._sessions.clear()

    async def _accept(self, loop: asyncio.AbstractEventLoop, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = await loop.sock_accept(server)
            except OSError as exc:  # out of file descriptors, say: the agent serves on
                log.warning("Accepting a command failed: %s; trying again in 1 s", exc)
                await asyncio.sleep(1)
                continue
            if self._busy >= MAX_REQUESTS:
                log.warning("Refused a command: %d are running already (the limit)", MAX_REQUESTS)
                self._requests.spawn(self._refuse_busy(loop, conn))
                continue
            self._requests.spawn(self._serve_request(loop, conn))

    def _arm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.idle_timeout > 0:  # 0: run until stopped (a user service)
            self._idle = asyncio.get_running_loop().call_later(self.idle_timeout, self._idled)

    def _idled(self) -> None:
        log.info("No command for %g s; the agent ends", self.idle_timeout)
        self.stopped.set()

    # --- one request --------------------------------------------------------------------

    async def _serve_request(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        self._busy += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        fds: list[int] = []
        try:
            if not _same_user(conn):
                log.warning("Refused a command from another user")
                return
            try:
                request, fds = await _receive_request(loop, conn)
            except EmptyRequest:
                return  # a caller that only looked whether an agent runs
            except agentwire.AgentWireError as exc:
                log.warning("Refused a command: %s", exc)
                return
            status = await self._answer(loop, conn, request, fds)
            with contextlib.suppress(OSError):
                await loop.sock_sendall(conn, agentwire.encode_answer(status))
        finally:
            _close_all(fds)
            conn.close()
            self._busy -= 1
            if self._busy == 0 and not self.stopped.is_set():
                self._arm_idle_timer()

    async def _refuse_busy(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        """A caller over the limit runs the command itself rather than wait."""
        with conn, contextlib.suppress(OSError):
            await loop.sock_sendall(conn, agentwire.FALLBACK)

    async def _answer(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: socket.socket,
        request: Request,
        fds: list[int],
    ) -> int | None:
        """Runs the command, cancelled when the caller goes away (ssh closed, Ctrl-C); its
        exit status, None to leave it to the caller."""
        if request.command == "stop":
            log.info("Asked to stop")
            self.stopped.set()
            return 0
        if len(fds) != len(agentwire.STDIO):
            log.warning("Refused a command: it came with %d file descriptors, not 3", len(fds))
            return 2
        command = asyncio.create_task(self._run(request, Terminal(*fds)))
        gone = asyncio.create_task(loop.sock_recv(conn, 1))
        try:
            await asyncio.wait({command, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not command.done():
                log.info("A caller went away; its command stops")
                command.cancel()
            await asyncio.gather(command, gone, return_exceptions=True)
        if command.cancelled():
            return 1
        return command.result()

    async def _run(self, request: Request, terminal: Terminal) -> int | None:
        cwd = request.cwd
        if not cwd.startswith("/"):
            return terminal.fail("the agent got a request without its directory", 2)
        args = self._parse(request.argv, Path(cwd))
        if args is None:
            return None
        try:
            # Relative paths in the configuration file are the caller's directory's, as
            # without an agent. Reading it does not await: nothing else runs meanwhile.
            with contextlib.chdir(cwd):
                if not agent_settings(args).enabled:
                    return None
                options = client_options(args)
        except ConfigError as exc:
            return terminal.fail(str(exc), 2)
        except OSError as exc:
            return terminal.fail(f"cannot enter {cwd}: {exc.strerror or exc}", 2)
        client = self._session(options)
        if client is None:
            return None
        command = request.command or args.command
        if command == "pipe":
            return await commands.pipe(options, args.service, client, terminal)
        if command == "fetch":
            try:
                fetch = fetch_request(args)
            except FetchRequestError as exc:
                return terminal.fail(str(exc), 2)
            return await commands.fetch(options, args.service, fetch, client, terminal)
        return None

    def _parse(self, argv: list[str], cwd: Path) -> argparse.Namespace | None:
        """The command line parsed as the CLI does, its relative paths taken from the caller's
        directory; None when it does not parse (the caller shows the usage error)."""
        try:
            with (
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                args = self._parser.parse_args(argv)
        except SystemExit:
            return None
        for name, value in vars(args).items():
            if (
                isinstance(value, Path)
                and not value.is_absolute()
                and not str(value).startswith("~")
            ):
                setattr(args, name, cwd / value)
        return args

    def _session(self, options: ClientOptions) -> BridgeClient | None:
        """The warm client of these options; None when this process cannot serve them."""
        seams = (options.ice, options.data_path)
        if self._installed is None:
            commands.install_seams(options)
            self._installed = seams
        elif seams != self._installed:
            log.info("A command with other ICE servers or data path than this agent's runs itself")
            return None
        key = session_key(options)
        client = self._sessions.pop(key, None)  # put back last: the most recently used
        if client is None:
            if len(self._sessions) >= MAX_SESSIONS:
                self._retire_oldest()
            client = BridgeClient(options)
            log.info("New session for %r (%d open)", options.target, len(self._sessions) + 1)
        self._sessions[key] = client
        return client

    def _retire_oldest(self) -> None:
        oldest = next(iter(self._sessions))
        client = self._sessions.pop(oldest)
        log.info("Closing the session for %r: %d are open (the limit)", oldest[2], MAX_SESSIONS)
        self._requests.spawn(client.close())


class EmptyRequest(agentwire.AgentWireError):
    """The caller closed without a word."""


class AgentRunning(Exception):
    def __init__(self, path: Path) -> None:
        super().__init__(f"an agent is running at {path} already")


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid) == os.getuid()


async def _receive_request(
    loop: asyncio.AbstractEventLoop, conn: socket.socket
) -> tuple[Request, list[int]]:
    """One request and its file descriptors; AgentWireError when it is not one."""
    fds: list[int] = []
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            payload = await _read_request(loop, conn, fds)
        cwd, command, argv = agentwire.decode_request(payload)
    except TimeoutError:
        _close_all(fds)
        raise agentwire.AgentWireError(f"no whole request within {REQUEST_TIMEOUT:g} s") from None
    except BaseException:
        _close_all(fds)
        raise
    return Request(cwd, command, argv), fds


async def _read_request(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, fds: list[int]
) -> bytes:
    """The payload after its ``LENGTH\n``; the descriptors come with the first bytes."""
    data = b""
    while True:
        length, newline, rest = data.partition(b"\n")
        if newline:
            if not length.isdigit() or int(length) > agentwire.MAX_REQUEST_BYTES:
                raise agentwire.AgentWireError("the request does not start with its length")
            if len(rest) >= int(length):
                return rest[: int(length)]
        elif len(data) > 8:
            raise agentwire.AgentWireError("the request does not start with its length")
        chunk, more = await _recv_fds(loop, conn)
        fds.extend(more)
        if len(fds) > len(agentwire.STDIO):
            raise agentwire.AgentWireError("the request came with too many file descriptors")
        if not chunk:
            if not data:
                raise EmptyRequest
            raise agentwire.AgentWireError("the caller ended before its request did")
        data += chunk


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    fds.clear()


async def _recv_fds(
    loop: asyncio.AbstractEventLoop, conn: socket.socket
) -> tuple[bytes, list[int]]:
    """``socket.recv_fds`` once the socket is readable (asyncio has no recvmsg of its own)."""
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await readable
    finally:
        loop.remove_reader(conn.fileno())
    data, fds, _flags, _address = socket.recv_fds(conn, agentwire.MAX_REQUEST_BYTES, 4)
    return data, fds


async def run_agent(
    path: Path,
    idle_timeout: float,
    parser: argparse.ArgumentParser,
    on_ready: Callable[[str], None],
) -> int:
    """Listen, say so through ``on_ready``, serve until stopped; the exit status."""
    from p2p_runtime.stop import stop_on_signal  # noqa: PLC0415

    agent = Agent(path, idle_timeout, parser)
    try:
        server = agent.listen()
    except AgentRunning as exc:
        on_ready("running")
        log.info("%s", exc)
        return 0
    except (OSError, agentwire.AgentWireError) as exc:
        log.error("The agent cannot listen at %s: %s", path, exc)
        return 1
    stop = stop_on_signal()
    stopping = asyncio.create_task(stop.wait())
    stopping.add_done_callback(lambda _: agent.stopped.set())
    log.info("Listening at %s; ends after %g s without a command", path, idle_timeout)
    on_ready("ready")
    try:
        await agent.serve(server)
    finally:
        stopping.cancel()
    return 0
