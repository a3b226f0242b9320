"""Network namespaces for end-to-end tests: hosts, links, NAT routers, and their processes.

Everything lives in namespaces this module creates (named ``hpb<pid>-<host>``) and removes
again, processes first, even when a test fails. Nothing is attached to the root namespace:
the test process reaches into a namespace by creating a socket there (``Namespace.socket``).
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lab import network_guard

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name
        self.processes: list[subprocess.Popen[Any]] = []

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, *argv: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv),
            check=check,
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
        )

    def popen(self, argv: Sequence[str], **kwargs: Any) -> "subprocess.Popen[Any]":
        process = subprocess.Popen(self.command(argv), **kwargs)
        self.processes.append(process)
        return process

    def inside(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread that has entered this namespace (sockets it makes stay here)."""
        outcome: list[Any] = []

        def enter() -> None:
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {self.name} failed")
                outcome.append(work())
            except BaseException as exc:  # handed to the caller's thread below
                outcome.append(exc)
            finally:
                os.close(fd)

        thread = threading.Thread(target=enter)
        thread.start()
        thread.join()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]  # type: ignore[no-any-return]

    def socket_connected(self, host: str, port: int, timeout: float = 10) -> socket.socket:
        """A TCP socket in this namespace, connected to host:port, non-blocking."""

        def connect() -> socket.socket:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setblocking(False)
            return sock

        return self.inside(connect)

    def socket_listening(self, host: str, port: int = 0) -> socket.socket:
        """A TCP server socket in this namespace."""

        def listen() -> socket.socket:
            sock = socket.create_server((host, port))
            sock.setblocking(False)
            return sock

        return self.inside(listen)

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait()
        # Anything else still running in here (children of what we started).
        listed = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        pids = listed.stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


class Lab:
    """A set of namespaces and links, removed as a whole by ``close``."""

    def __init__(self, tag: str = "") -> None:
        self.prefix = f"hpb{os.getpid() % 100000}{tag}-"
        self.namespaces: dict[str, Namespace] = {}
        self._networks: list[str] = []

    def host(self, short: str) -> Namespace:
        name = self.prefix + short
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("netns", "del", name)  # a leftover of an interrupted run with the same pid
        ip("netns", "add", name)
        namespace = Namespace(name)
        self.namespaces[short] = namespace
        ip("-n", name, "link", "set", "lo", "up")
        return namespace

    def allow(self, network: str) -> None:
        """Let the test process talk to ``network`` (see lab/network_guard.py)."""
        import ipaddress

        net = ipaddress.ip_network(network, strict=False)
        network_guard.allowed_networks.append(net)
        self._networks.append(network)

    def switch(self, short: str, network: str, members: dict[Namespace, str]) -> Namespace:
        """A bridge in a namespace of its own, with each member on it at its address (CIDR)."""
        switch = self.host(short)
        ip("-n", switch.name, "link", "add", "br0", "type", "bridge")
        ip("-n", switch.name, "link", "set", "br0", "up")
        for index, (member, address) in enumerate(members.items()):
            self.wire(member, address, switch, f"p{index}", bridge="br0")
        self.allow(network)
        return switch

    def wire(
        self,
        member: Namespace,
        address: str,
        other: Namespace,
        other_end: str,
        bridge: str | None = None,
        member_end: str = "eth0",
    ) -> None:
        ip(
            "link",
            "add",
            member_end,
            "netns",
            member.name,
            "type",
            "veth",
            "peer",
            "name",
            other_end,
            "netns",
            other.name,
        )
        ip("-n", member.name, "addr", "add", address, "dev", member_end)
        ip("-n", member.name, "link", "set", member_end, "up")
        if bridge:
            ip("-n", other.name, "link", "set", other_end, "master", bridge)
        ip("-n", other.name, "link", "set", other_end, "up")

    def close(self) -> None:
        for namespace in self.namespaces.values():
            namespace.stop_processes()
        for namespace in self.namespaces.values():
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", namespace.name)
        self.namespaces.clear()
        import ipaddress

        for network in self._networks:
            with contextlib.suppress(ValueError):
                network_guard.allowed_networks.remove(ipaddress.ip_network(network, strict=False))


@contextlib.contextmanager
def lab(tag: str = "") -> Iterator[Lab]:
    built = Lab(tag)
    try:
        yield built
    finally:
        built.close()


def venv_bin(name: str) -> str:
    import sys

    return str(Path(sys.executable).with_name(name))
