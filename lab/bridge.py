"""The bridge's processes in the lab, started the way users start them."""

import asyncio
import contextlib
import logging
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Self

import yaml

from lab import credential, credential_file, default_client_file, token
from lab.netns import Namespace, venv_bin
from p2p_runtime.tasks import OwnedTasks

log = logging.getLogger("lab.bridge")


class LoggedProcess:
    """A process in a namespace whose stdout lines and stderr log the test can wait for."""

    def __init__(self, namespace: Namespace, argv: list[str], log_path: Path) -> None:
        self.namespace = namespace
        self.argv = argv
        self.log_path = log_path
        self.lines: queue.Queue[str] = queue.Queue()
        with log_path.open("wb") as log:
            self.process = namespace.popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 30, since: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(self.log(), since)
            if match:
                return match
            if self.process.poll() is not None:
                status = self.process.returncode
                raise AssertionError(
                    f"{self.argv[0]} exited ({status}) before {pattern!r}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not logged within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    async def logged(self, pattern: str, within: float = 30, since: int = 0) -> re.Match[str]:
        """``wait_for_log`` without blocking the test's event loop."""
        return await asyncio.to_thread(self.wait_for_log, pattern, within, since)

    def next_line(self, timeout: float = 30) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.argv[0]} printed nothing within {timeout} s:\n{self.log()}"
            ) from None

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise AssertionError(f"{self.argv[0]} ignored SIGTERM:\n{self.log()}") from None
        return self.process.returncode


def write_daemon_config(
    path: Path, signaling_url: str, services: dict[str, str], **extra: Any
) -> Path:
    name = extra.get("name", "laptop")
    token_file = path.with_suffix(".token")
    token_file.write_text(token("homelab", name) + "\n")
    homelab = credential("homelab", name, ttl=30 * 86400)  # a month: no expiry warning
    identity = credential_file(homelab, path.with_suffix(".identity.json"))
    config: dict[str, Any] = {
        "signaling_url": signaling_url,
        "token_file": str(token_file),
        "identity_file": str(identity),
        "ice_servers": [],
        "services": services,
        "log_level": "DEBUG",
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def start_daemon(namespace: Namespace, config: Path, log_path: Path) -> LoggedProcess:
    daemon = LoggedProcess(
        namespace, [venv_bin("homelab_server"), "--config", str(config)], log_path
    )
    await daemon.logged(r"Registered as '\S+': connection id")
    assert_no_public_servers(daemon)
    return daemon


def assert_no_public_servers(process: LoggedProcess) -> None:
    """The lab reaches nothing outside: no process may use the public default STUN server."""
    servers = re.search(r"ICE servers: (.*);", process.log())
    assert servers, f"{process.argv[0]} did not log its ICE servers:\n{process.log()}"
    assert "stun.l.google.com" not in servers.group(1), servers.group(0)


def client_args(signaling_url: str, *extra: str) -> list[str]:
    """The client's connection flags; no ICE server unless ``extra`` names some.

    Never the client's built-in default (a public STUN server): tests reach nothing outside.
    """
    ice = [] if "--ice-server" in extra else ["--ice-server", "none"]
    identity = (
        [] if "--credential-file" in extra else ["--credential-file", str(default_client_file())]
    )
    return [
        "--signaling-url",
        signaling_url,
        *identity,
        "--timeout",
        "10",
        *ice,
        *extra,
    ]


async def start_forward(
    namespace: Namespace, service: str, signaling_url: str, log_path: Path, *extra: str
) -> tuple[LoggedProcess, int]:
    """``homelab-p2p forward SERVICE --listen 127.0.0.1:0``; returns it and its port."""
    argv = [
        venv_bin("homelab-p2p"),
        "forward",
        service,
        "--listen",
        "127.0.0.1:0",
        "-v",
        *client_args(signaling_url, *extra),
    ]
    forward = LoggedProcess(namespace, argv, log_path)
    line = await asyncio.to_thread(forward.next_line)
    match = re.match(r"Forwarding 127\.0\.0\.1:(\d+) to", line)
    assert match, f"unexpected output {line!r}:\n{forward.log()}"
    assert_no_public_servers(forward)
    return forward, int(match.group(1))


class NamespaceTcpService:
    """A TCP service inside a namespace, run by the caller's event loop: one task per connection.

    Subclasses say what to do with a connection in ``_serve``; ``stop`` cancels the ones still open.
    """

    def __init__(self, namespace: Namespace, port: int, host: str = "127.0.0.1") -> None:
        self.namespace = namespace
        self.port = port
        self.host = host
        self._server: asyncio.Server | None = None
        self._handlers = OwnedTasks(log, f"Serving a connection on port {port}")

    async def start(self) -> None:
        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._handlers.spawn(self._serve(reader, writer))

        self._server = await asyncio.start_server(
            accept, sock=self.namespace.socket_listening(self.host, self.port)
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._handlers.cancel()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class EchoService(NamespaceTcpService):
    """A TCP echo service inside a namespace on 127.0.0.1:port."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def echo_round_trip(namespace: Namespace, port: int, size: int) -> bool:
    """Send ``size`` random bytes through 127.0.0.1:port in ``namespace``; True if all came back."""
    reader, writer = await asyncio.open_connection(
        sock=namespace.socket_connected("127.0.0.1", port)
    )
    payload = os.urandom(size)

    async def send() -> None:
        writer.write(payload)
        await writer.drain()

    sender = asyncio.create_task(send())
    try:
        received = await asyncio.wait_for(reader.readexactly(size), 120)
    finally:
        await sender
        writer.close()
        await writer.wait_closed()
    return received == payload


async def first_echoed_byte(
    namespace: Namespace, argv: list[str], within: float = 30
) -> tuple[float, bytes]:
    """Seconds from starting ``argv`` (a ``pipe`` to an echo service) to the first byte it
    echoes, and its stderr; then stdin closes and it must exit 0 (else RuntimeError)."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *namespace.command(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(b"x")
        await process.stdin.drain()
        echoed = await asyncio.wait_for(process.stdout.read(1), within)
        first_byte = time.perf_counter() - started
        process.stdin.close()
        _, stderr = await asyncio.wait_for(process.communicate(), within)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if echoed != b"x" or process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} echoed {echoed!r} and exited {process.returncode}: "
            f"{stderr.decode(errors='replace')}"
        )
    return first_byte, stderr


class BridgeHosts:
    """A homelab and a client host with signaling between them; starts the bridge's ends."""

    homelab: Namespace
    client: Namespace
    workdir: Path
    signaling_url: str

    async def start_daemon(
        self, services: dict[str, str], name: str = "daemon", **config: Any
    ) -> LoggedProcess:
        """``homelab_server`` in the homelab with these services (and config keys), registered."""
        path = write_daemon_config(
            self.workdir / f"{name}.yml", self.signaling_url, services, **config
        )
        return await start_daemon(self.homelab, path, self.workdir / f"{name}.log")

    async def start_forward(
        self, service: str, *flags: str, name: str = "forward"
    ) -> tuple[LoggedProcess, int]:
        """``homelab-p2p forward SERVICE`` in the client; it and its local port."""
        return await start_forward(
            self.client, service, self.signaling_url, self.workdir / f"{name}.log", *flags
        )
