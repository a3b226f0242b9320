"""The daemon's status socket and ``homelab-p2p status``'s reader, on real Unix sockets."""

import asyncio
import json
import logging
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from homelab_p2p.status import StatusUnavailable, duration, read_snapshot, render, size
from homelab_server.status import MAX_READERS, SCHEMA, StatusSocket
from lab.bridge import write_daemon_config
from lab.netns import venv_bin

SNAPSHOT: dict[str, Any] = {
    "schema": SCHEMA,
    "name": "laptop",
    "pid": 4242,
    "uptime_seconds": 11045.0,
    "signaling": {
        "url": "wss://abc.example/prod",
        "registered": True,
        "connection_id": "C1=",
        "registered_seconds": 125.0,
        "replacements": 0,
        "last_problem": None,
    },
    "services": ["ssh", "web"],
    "max_peers": 32,
    "peers": [],
    "offers_refused": {},
}


async def read_in_thread(path: Path) -> dict[str, Any]:
    return await asyncio.to_thread(read_snapshot, path)


async def test_each_reader_gets_the_snapshot_and_the_socket_goes_with_the_daemon(
    tmp_path: Path,
) -> None:
    path = tmp_path / "status.sock"
    calls = []

    def snapshot() -> dict[str, Any]:
        calls.append(1)
        return {**SNAPSHOT, "uptime_seconds": float(len(calls))}

    status = StatusSocket(path, snapshot)
    await status.start()
    assert (path.stat().st_mode & 0o777) == 0o660
    assert (await read_in_thread(path))["uptime_seconds"] == 1.0
    assert (await read_in_thread(path))["uptime_seconds"] == 2.0  # taken afresh each time
    await status.close()
    assert not path.exists()


async def test_a_stale_socket_is_replaced_and_any_other_file_refused(tmp_path: Path) -> None:
    stale = tmp_path / "status.sock"
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(stale))  # what a killed daemon leaves behind
    status = StatusSocket(stale, lambda: SNAPSHOT)
    await status.start()
    assert (await read_in_thread(stale))["name"] == "laptop"
    await status.close()

    regular = tmp_path / "config.yml"
    regular.write_text("precious")
    with pytest.raises(OSError, match="exists and is not a socket; remove it or choose another"):
        await StatusSocket(regular, lambda: SNAPSHOT).start()
    assert regular.read_text() == "precious"


async def test_past_max_readers_another_is_closed_at_once_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "status.sock"
    # Larger than a Unix socket's buffer: a reader that does not read holds its slot.
    large = {**SNAPSHOT, "padding": "x" * (4 * 1024 * 1024)}
    status = StatusSocket(path, lambda: large)
    await status.start()
    holding = []
    for _ in range(MAX_READERS):
        reader, writer = await asyncio.open_unix_connection(str(path))
        assert await reader.readexactly(1) == b"{"  # being served, and not reading on
        holding.append(writer)
    with caplog.at_level(logging.WARNING, logger="homelab_server"):
        reader, writer = await asyncio.open_unix_connection(str(path))
        assert await reader.read() == b""
        writer.close()
    assert f"Status: {MAX_READERS} readers at once already; closing another" in caplog.text
    for writer in holding:
        writer.close()
    await status.close()


def test_the_reader_says_what_to_do_when_no_daemon_answers(tmp_path: Path) -> None:
    with pytest.raises(StatusUnavailable, match=r"no daemon answers at .*: is homelab-p2p-bridge"):
        read_snapshot(tmp_path / "missing.sock")
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(stale))
    with pytest.raises(StatusUnavailable, match=r"nothing listens on .*: the daemon stopped"):
        read_snapshot(stale)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "did not answer with a status: is it the daemon's"),
        (
            json.dumps({**SNAPSHOT, "schema": 99}).encode(),
            "a status this homelab-p2p does not know",
        ),
    ],
)
async def test_the_reader_refuses_what_is_not_a_status_it_knows(
    tmp_path: Path, answer: bytes, message: str
) -> None:
    path = tmp_path / "other.sock"

    async def answer_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(answer_once, path=str(path))
    try:
        with pytest.raises(StatusUnavailable, match=message):
            await read_in_thread(path)
    finally:
        server.close()
        await server.wait_closed()


def test_a_person_reads_the_registration_peers_and_refusals() -> None:
    peer = {
        "client": "alice",
        "credential": "e661e3758d3c823c",
        "signaling_id": "P1=",
        "state": "connected",
        "pair": "relay",
        "age_seconds": 302.4,
        "channels": 2,
        "channels_refused": 0,
        "bytes_sent": 1_150_000,
        "bytes_received": 999,
        "round_trip_ms": 16.6,
    }
    shown = render({**SNAPSHOT, "peers": [peer], "offers_refused": {"busy": 1, "rate_limited": 3}})
    assert shown.splitlines() == [
        "laptop: registered at wss://abc.example/prod for 2m 05s (connection C1=)",
        "up 3h 04m (pid 4242); services: ssh, web",
        "peers: 1 of 32; offers refused since start: 1 busy, 3 rate_limited",
        "CLIENT  CREDENTIAL        PAIR   AGE     CHANNELS  IN     OUT     RTT",
        "alice   e661e3758d3c823c  relay  5m 02s  2         999 B  1.1 MB  16.6 ms",
    ]
    down = {**SNAPSHOT["signaling"], "registered": False, "last_problem": "connection refused"}
    assert render({**SNAPSHOT, "signaling": down}).splitlines()[0] == (
        "laptop: NOT registered at wss://abc.example/prod: connection refused"
    )
    assert [duration(s) for s in (None, 42, 302, 7380, 273600)] == [
        "-",
        "42s",
        "5m 02s",
        "2h 03m",
        "3d 04h",
    ]
    assert [size(n) for n in (0, 999, 1000, 2_500_000, 7 * 10**12)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "2.5 MB",
        "7000.0 GB",
    ]


def test_a_daemon_whose_status_socket_cannot_be_made_stops_with_one_sentence(
    tmp_path: Path,
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a socket")
    config = write_daemon_config(
        tmp_path / "daemon.yml", "ws://127.0.0.1:1/prod", {}, status_socket=str(taken)
    )
    daemon = subprocess.run(
        [venv_bin("homelab_server"), "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert daemon.returncode == 2
    assert (
        f"[ERROR] status_socket: cannot listen on {taken} ({taken} exists and is not a socket"
        in (daemon.stderr)
    )
    assert "Traceback" not in daemon.stderr
    assert taken.read_text() == "not a socket"
