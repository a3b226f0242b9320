"""The management API over real HTTP, through boto3 as the handler calls it, and static files."""

import asyncio
import http.client
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from lab import token
from lab.gateway import GatewayProcess, management_client, write_management_secret
from lab.ws import identify, open_ws, recv_json
from tests.support.integration import StartGateway


@pytest.fixture
def gateway(start_gateway: StartGateway, tmp_path: Path) -> GatewayProcess:
    """A gateway whose management API these tests call, with the lab's secret."""
    secret_file = write_management_secret(tmp_path / "management-secret")
    return start_gateway("--management-secret-file", str(secret_file))


async def test_post_get_and_delete_a_connection(gateway: GatewayProcess) -> None:
    client = management_client(gateway.management_url)
    ws = await open_ws(gateway.url, token())
    connection_id = await identify(ws)

    await asyncio.to_thread(
        client.post_to_connection, ConnectionId=connection_id, Data=b'{"hello":1}'
    )
    assert await recv_json(ws) == {"hello": 1}

    info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert info["ConnectedAt"] <= info["LastActiveAt"]

    await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
    async with asyncio.timeout(10):
        await ws.wait_closed()
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)


@pytest.mark.parametrize("call", ["post_to_connection", "get_connection", "delete_connection"])
def test_unknown_connection_ids_are_gone(gateway: GatewayProcess, call: str) -> None:
    client = management_client(gateway.management_url)
    kwargs = {"ConnectionId": "AAAAAAAAAAAAAAA="} | (
        {"Data": b"x"} if call.startswith("post") else {}
    )
    with pytest.raises(client.exceptions.GoneException):
        getattr(client, call)(**kwargs)


def test_another_stage_is_forbidden(gateway: GatewayProcess) -> None:
    client = management_client(gateway.management_url.replace("/prod", "/dev"))
    with pytest.raises(client.exceptions.ForbiddenException):
        client.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")


async def test_payload_over_128_kib_is_refused(gateway: GatewayProcess) -> None:
    client = management_client(gateway.management_url)
    async with await open_ws(gateway.url, token()) as ws:
        connection_id = await identify(ws)
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(
                client.post_to_connection, ConnectionId=connection_id, Data=b"x" * 131073
            )


def test_management_api_listens_on_loopback_only(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--host", "0.0.0.0")  # the management API must stay on loopback
    management_port = urlsplit(gateway.management_url).port
    websocket_port = urlsplit(gateway.url).port
    listening = {
        conn.laddr.port: conn.laddr.ip
        for conn in psutil.Process(gateway.process.pid).net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN
    }
    assert management_port is not None
    assert websocket_port is not None
    assert listening[management_port] == "127.0.0.1"
    assert listening[websocket_port] == "0.0.0.0"


def http_get(url: str) -> tuple[int, str, bytes]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", parts.path or "/")
    response = connection.getresponse()
    return response.status, response.getheader("Content-Type", ""), response.read()


def test_plain_get_serves_the_static_directory(start_gateway: StartGateway, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>bridge</h1>")
    (site / "app.js").write_text("export const x = 1;")
    (tmp_path / "secret.txt").write_text("outside")
    gateway = start_gateway("--static-dir", str(site))
    base = gateway.url.replace("ws://", "http://").removesuffix("/prod")
    assert http_get(base + "/") == (200, "text/html; charset=utf-8", b"<h1>bridge</h1>")
    status, content_type, _ = http_get(base + "/app.js")
    assert (status, content_type.split(";")[0]) == (200, "text/javascript")
    assert http_get(base + "/../secret.txt")[0] == 404
    assert http_get(base + "/%2e%2e/secret.txt")[0] == 404
    assert http_get(base + "/missing.html")[0] == 404


def test_by_default_the_bundled_frontend_is_served(gateway: GatewayProcess) -> None:
    base = gateway.url.replace("ws://", "http://").removesuffix("/prod")
    status, content_type, body = http_get(base + "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert b'<script type="module" src="app.js">' in body
    status, content_type, _ = http_get(base + "/wss-webrtc.js")
    assert (status, content_type.split(";")[0]) == (200, "text/javascript")


def test_a_static_directory_without_index_html_answers_404(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway("--static-dir", str(tmp_path))
    base = gateway.url.replace("ws://", "http://").removesuffix("/prod")
    assert http_get(base + "/")[0] == 404


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /prod/@connections/x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /prod/@connections/x HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n",
    ],
    ids=["bad-content-length", "huge-header", "tls-hello"],
)
def test_malformed_http_to_the_management_api_is_one_warning(
    gateway: GatewayProcess, request_bytes: bytes
) -> None:
    import socket

    port = urlsplit(gateway.management_url).port
    assert port is not None
    mark = len(gateway.log())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_bytes)
        assert sock.recv(64).startswith(b"HTTP/1.0 400")
    # The connection is still served afterwards, and the log holds no traceback (see conftest).
    client = management_client(gateway.management_url)
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
    new_lines = gateway.log_lines_since(mark)
    assert all(not line.startswith("[ERROR]") for line in new_lines), new_lines
