import socket

import pytest


def test_lookups_of_outside_names_are_refused_before_they_happen() -> None:
    with pytest.raises(OSError, match="test network guard"):
        socket.getaddrinfo("example.org", 443)


def test_connections_outside_loopback_are_refused() -> None:
    with socket.socket() as sock, pytest.raises(OSError, match="test network guard"):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, and never tried


def test_loopback_is_allowed() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname(), timeout=5),
    ):
        pass
