"""systemd's watchdog: the daemon pings while healthy and stops when its loop stops.

systemd is not PID 1 here (molecule checks the restart itself): the test stands where systemd
stands, a datagram socket in ``$NOTIFY_SOCKET``, and passes ``$WATCHDOG_USEC`` as it does.
"""

import asyncio
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.bridge import write_daemon_config
from lab.gateway import GatewayProcess
from lab.netns import venv_bin
from p2p_runtime.watchdog import keep_watchdog, watchdog_interval

INTERVAL = 1.0


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """The notify socket, as systemd listens on it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listening:
        listening.bind(str(tmp_path / "notify"))
        yield listening


def messages(listening: socket.socket, until: str, timeout: float = 30) -> list[str]:
    """What the service sent, up to and with the first datagram holding ``until``."""
    listening.settimeout(timeout)
    seen = []
    while True:
        seen.append(listening.recv(4096).decode())
        if until in seen[-1]:
            return seen


def stopped(pid: int) -> bool:
    """The kernel has stopped the process (state T): SIGSTOP has taken effect."""
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("T")


def test_the_daemon_is_ready_pings_while_its_loop_runs_and_not_while_it_is_stopped(
    gateway: GatewayProcess, tmp_path: Path, systemd: socket.socket
) -> None:
    config = write_daemon_config(tmp_path / "daemon.yml", gateway.url, {})
    environment = {
        **os.environ,
        "NOTIFY_SOCKET": systemd.getsockname(),
        "WATCHDOG_USEC": str(int(INTERVAL * 1_000_000)),
    }
    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [venv_bin("homelab_server"), "--config", str(config)], env=environment, stderr=log
        )
    try:
        assert any("READY=1" in m for m in messages(systemd, "READY=1"))
        for _ in range(3):
            messages(systemd, "WATCHDOG=1", timeout=INTERVAL * 2)

        daemon.send_signal(signal.SIGSTOP)  # the whole loop stops, as a hang stops it
        while not stopped(daemon.pid):
            pass
        systemd.setblocking(False)
        while True:  # what it sent before it stopped
            try:
                systemd.recv(4096)
            except BlockingIOError:
                break
        systemd.settimeout(INTERVAL * 2.5)  # systemd would restart it after INTERVAL
        with pytest.raises(TimeoutError):
            systemd.recv(4096)

        daemon.send_signal(signal.SIGCONT)
        messages(systemd, "WATCHDOG=1", timeout=INTERVAL * 2)
        daemon.terminate()
        assert daemon.wait(20) == 0
        assert "STOPPING=1" in "".join(messages(systemd, "STOPPING=1", timeout=5))
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGCONT)
            daemon.kill()
            daemon.wait()


async def test_an_unhealthy_service_stops_pinging_with_one_line_and_says_when_it_recovers(
    systemd: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.getsockname())
    asked = iter([None, "stuck", "stuck", "stuck", None])
    done = asyncio.Event()

    def health() -> str | None:
        try:
            return next(asked)
        except StopIteration:
            done.set()
            return "the test is over"  # no ping after the answers above

    with caplog.at_level(logging.WARNING, logger="p2p_runtime"):
        watching = asyncio.create_task(keep_watchdog(0.02, health))
        await asyncio.wait_for(done.wait(), 10)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    systemd.setblocking(False)
    pings = 0
    while True:
        try:
            pings += systemd.recv(4096) == b"WATCHDOG=1"
        except BlockingIOError:
            break
    assert pings == 2  # one for each healthy answer; one line for each change of verdict
    assert [r.getMessage() for r in caplog.records] == [
        "Watchdog: not pinging systemd: stuck; it restarts the service 0.02 s after the last ping",
        "Watchdog: healthy again, pinging systemd",
        "Watchdog: not pinging systemd: the test is over; it restarts the service 0.02 s after "
        "the last ping",
    ]


def test_the_interval_is_systemds_and_only_for_its_main_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    mine = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": mine}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None
