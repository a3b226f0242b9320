"""Who may connect and who may register."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from lab import credential, token
from lab.gateway import GATEWAY, GatewayProcess
from lab.ws import open_ws, request
from p2p_protocol.tokens import issue_token
from tests.support.integration import StartGateway

OTHER_SECRET = b"another-secret-that-is-long-enough-to-use"


@pytest.mark.parametrize(
    ("presented", "why"),
    [
        (None, "no token was given"),
        ("not-a-token", "is not a hp1.<payload>.<signature> token"),
        (token()[:-4] + "AAAA", "signature does not match"),
        (
            issue_token(OTHER_SECRET, "client", "alice", 3600, homelabs=("laptop",)),
            "signature does not match",
        ),
        (token(ttl=60, now=time.time() - 3600), "the token expired at"),
    ],
    ids=["missing", "malformed", "forged", "other-secret", "expired"],
)
async def test_connect_without_a_valid_token_is_refused_with_401(
    gateway: GatewayProcess, presented: str | None, why: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(gateway.url, presented)
    assert refused.value.response.status_code == 401
    gateway.wait_for_log(r"\[WARNING\] Connection refused, returning 401: .*" + re.escape(why))


async def test_websocket_on_another_path_is_refused(gateway: GatewayProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(gateway.url.replace("/prod", "/dev"), token())
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"name": "laptop"}, "no token was given"),
        ({"name": "laptop", "token": token("client", "laptop")}, "a client token cannot register"),
        (
            {"name": "laptop", "token": token("homelab", "nas")},
            "the token is for 'nas', not 'laptop'",
        ),
        (
            {"name": "laptop", "token": token("homelab", "laptop", 60, time.time() - 3600)},
            "expired",
        ),
    ],
    ids=["no-token", "client-token", "other-name", "expired"],
)
async def test_only_a_homelab_token_for_that_name_may_register(
    gateway: GatewayProcess, body: dict[str, str], why: str
) -> None:
    async with await open_ws(gateway.url, token("homelab", "laptop")) as ws:
        reply = await request(ws, {"action": "register", **body})
        assert reply["error"] == "unauthorized"
        assert why in reply["message"]
    # Nothing was registered: a client still finds no homelab.
    async with await open_ws(gateway.url, token()) as client:
        probe = await request(client, {"action": "sendSignal", "to": "laptop", "data": "x"})
        assert probe["error"] == "backend_unreachable"


async def test_no_auth_warns_loudly_and_lets_anyone_in(start_gateway: StartGateway) -> None:
    gateway = start_gateway(auth=False)
    assert "AUTHENTICATION IS OFF" in gateway.log()
    async with await open_ws(gateway.url) as ws:
        reply = await request(ws, {"action": "register", "name": "anything"})
    assert reply["action"] == "registered"


def test_an_invalid_handshake_is_refused_before_connect_runs(gateway: GatewayProcess) -> None:
    """Like API Gateway, $connect only runs for a handshake that could succeed."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(gateway.url)
    assert parts.hostname is not None
    assert parts.port is not None
    request = (
        f"GET /prod?token={token()} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: not-a-key\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request.encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 400")
    assert "RouteKey: $connect" not in gateway.log()


async def test_a_revoked_credentials_token_is_refused_without_a_restart(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """--revocation-file: the list Ansible keeps; read again when it changes."""
    listed = tmp_path / "revoked.json"
    listed.write_text('{"revoked": []}')
    gateway = start_gateway("--revocation-file", str(listed))
    lost = credential("client", "lost")
    async with await open_ws(gateway.url, lost.signaling_token) as ws:
        assert (await request(ws, {"action": "ping"}))["action"] == "pong"
        lost_id = lost.certificate.id
        listed.write_text(json.dumps({"revoked": [{"id": lost_id, "name": "lost"}]}))
        refused = await request(ws, {"action": "sendSignal", "to": "laptop", "data": "x"})
        assert refused["error"] == "unauthorized"
        assert f"the credential {lost_id} of this connection was revoked" in refused["message"]
    with pytest.raises(InvalidStatus) as handshake:
        await open_ws(gateway.url, lost.signaling_token)
    assert handshake.value.response.status_code == 401
    gateway.wait_for_log(rf"Connection refused, returning 401: the credential {lost_id} of client")
    async with await open_ws(gateway.url, credential("client", "kept").signaling_token):
        pass  # others still get in


def test_an_unreadable_revocation_file_stops_the_start(tmp_path: Path) -> None:
    absent = tmp_path / "absent.json"
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    argv = [str(GATEWAY), "--secret-file", str(secret), "--revocation-file", str(absent)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        f"signaling-gateway: --revocation-file: cannot read the revocation list {absent}: "
        "No such file or directory\n"
    )
