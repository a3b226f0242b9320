"""Refuse network traffic from the test process to anything but allowed addresses.

The project's rule: tests talk to loopback and to the network namespaces they create,
nothing else. botocore, moto or a bug could otherwise send a request off the machine (moto
passes requests it does not recognise through to the real network). The guard checks
name lookups before they happen (a lookup is itself traffic) and every connect().
"""

import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
allowed_networks = list(LOOPBACK)
"""End-to-end tests append the networks of the namespaces they build."""

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed_host(host: Any) -> bool:
    if host is None or host in ("", "localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False  # a name other than localhost: resolving it would already leave the box
    return any(address in network for network in allowed_networks)


def _refuse(host: Any) -> OSError:
    return OSError(
        errno.ENETUNREACH, f"test network guard: {host!r} is outside loopback and the lab"
    )


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _allowed_host(host):
        raise _refuse(host)
    return _real_getaddrinfo(host, *args, **kwargs)


def _guard_connect(real: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _allowed_host(address[0]):
            raise _refuse(address[0])
        return real(self, address)

    return connect


def install() -> None:
    socket.getaddrinfo = _guarded_getaddrinfo
    socket.socket.connect = _guard_connect(_real_connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guard_connect(_real_connect_ex)  # type: ignore[method-assign]
