import socket
from pathlib import Path

import pytest

from p2p_runtime.sdnotify import notify


def test_sends_the_fields_to_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        notify(STATUS="Registered as 'laptop'")
        assert listener.recv(1024) == b"STATUS=Registered as 'laptop'"


def test_without_systemd_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notify(STATUS="x")  # no socket, no error
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/socket")
    notify(STATUS="x")  # a socket that is not there: still no error
