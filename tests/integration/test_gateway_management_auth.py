"""The management API serves only holders of the gateway's management secret: its own handler,
or whoever reads --management-secret-file. Anyone else, another local user included, gets
403 and changes nothing, while the handler's relays keep working."""

import asyncio
import http.client
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lab import token
from lab.gateway import (
    GATEWAY,
    MANAGEMENT_SECRET,
    GatewayProcess,
    management_client,
    write_management_secret,
)
from lab.ws import identify, open_ws, recv_json, request, send_json
from tests.support.integration import StartGateway

FORBIDDEN = (403, "ForbiddenException", {"message": "Forbidden"})
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
# Run as another user: unsigned and forged-signature POSTs (a signal with a forged `from`)
# and DELETEs of the target connection; prints the uid it ran as and the statuses.
AS_ANOTHER_USER = """
import http.client, json, os, sys, time, urllib.parse
url, target, sender = sys.argv[1:]
parts = urllib.parse.urlsplit(url)
date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
forged = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=signaling-gateway/" + date[:8]
    + "/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    "X-Amz-Date": date,
}
signal = json.dumps({"action": "sendSignal", "from": sender, "to": "laptop",
                     "data": {"type": "offer", "sdp": "forged"}})
statuses = []
for method, body in (("POST", signal), ("DELETE", "")):
    for headers in ({}, forged):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.request(method, parts.path + "/@connections/" + target, body, headers)
        statuses.append(connection.getresponse().status)
print(json.dumps({"uid": os.getuid(), "statuses": statuses}))
"""


def plain_call(
    management_url: str, method: str, connection_id: str, body: bytes = b""
) -> tuple[int, str | None, Any]:
    """One HTTP request to the management API, without boto3: status, error type, JSON body."""
    parts = urlsplit(management_url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(method, f"{parts.path}/@connections/{connection_id}", body)
    response = connection.getresponse()
    answer = response.read()
    return response.status, response.getheader("x-amzn-ErrorType"), json.loads(answer or b"null")


@pytest.fixture
def gateway_with_secret_file(start_gateway: StartGateway, tmp_path: Path) -> GatewayProcess:
    secret_file = write_management_secret(tmp_path / "management-secret")
    return start_gateway("--management-secret-file", str(secret_file))


async def test_a_call_without_the_secret_is_refused_and_changes_nothing(
    gateway_with_secret_file: GatewayProcess,
) -> None:
    gateway = gateway_with_secret_file
    url = gateway.management_url
    target = await open_ws(gateway.url, token())
    target_id = await identify(target)
    forged = json.dumps({"action": "sendSignal", "from": "AAAAAAAAAAAAAAA=", "data": "x"})

    assert plain_call(url, "POST", target_id, forged.encode()) == FORBIDDEN
    assert plain_call(url, "GET", target_id) == FORBIDDEN
    assert plain_call(url, "DELETE", target_id) == FORBIDDEN
    wrong = management_client(url, secret="not-the-management-secret-0123456789")
    calls: list[Callable[[], object]] = [
        lambda: wrong.post_to_connection(ConnectionId=target_id, Data=forged.encode()),
        lambda: wrong.get_connection(ConnectionId=target_id),
        lambda: wrong.delete_connection(ConnectionId=target_id),
    ]
    for call in calls:
        with pytest.raises(wrong.exceptions.ForbiddenException):
            await asyncio.to_thread(call)

    # The target got none of it and is still open: the secret's holder reaches it, and the
    # first message it receives is that one.
    right = management_client(url)
    await asyncio.to_thread(right.post_to_connection, ConnectionId=target_id, Data=b'{"n":1}')
    assert await recv_json(target) == {"n": 1}
    await asyncio.to_thread(right.get_connection, ConnectionId=target_id)
    await target.close()

    refused = (
        rf"\[WARNING\] Management API: refused (\w+) '/prod/@connections/{re.escape(target_id)}': "
    )
    log = gateway.log()
    unsigned = re.findall(refused + r"it is not signed \(no Authorization header\)", log)
    assert unsigned == ["POST", "GET", "DELETE"]
    wrongly_signed = re.findall(refused + "its signature is not made with this gateway's", log)
    assert wrongly_signed == ["POST", "GET", "DELETE"]
    assert MANAGEMENT_SECRET not in log


async def test_another_local_user_cannot_post_or_delete_and_relays_still_work(
    gateway: GatewayProcess,
) -> None:
    """The gateway as deployed (a random secret per start); the caller runs as uid nobody."""
    homelab_token = token("homelab", "laptop")
    homelab = await open_ws(gateway.url, homelab_token)
    registered = await request(
        homelab, {"action": "register", "name": "laptop", "token": homelab_token}
    )
    homelab_id = registered["connectionId"]
    client = await open_ws(gateway.url, token())
    client_id = await identify(client)

    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    args = [gateway.management_url, homelab_id, client_id]
    ran = await asyncio.to_thread(
        subprocess.run,
        [*as_nobody, sys.executable, "-I", "-c", AS_ANOTHER_USER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"uid": 65534, "statuses": [403, 403, 403, 403]}

    # The homelab is still registered and connected, and the forged offer never reached it:
    # the client's offer, relayed by the handler (GetConnection, then PostToConnection), is
    # the first signal it gets.
    await send_json(client, {"action": "sendSignal", "to": "laptop", "data": OFFER})
    offer = await recv_json(homelab)
    assert (offer["action"], offer["from"], offer["data"]) == ("sendSignal", client_id, OFFER)
    await client.close()
    await homelab.close()
    refused = re.findall(
        rf"Management API: refused (\w+) '/prod/@connections/{re.escape(homelab_id)}'",
        gateway.log(),
    )
    assert refused == ["POST", "POST", "DELETE", "DELETE"]


@pytest.mark.parametrize(
    ("content", "mode", "why"),
    [
        ("s3cr3t\n", 0o600, "holds 6 bytes, but a signing secret needs at least 32"),
        (MANAGEMENT_SECRET, 0o644, "is open to other users; make it readable by its owner only"),
    ],
    ids=["short", "readable-by-others"],
)
def test_an_unfit_management_secret_file_stops_the_start(
    secret_file: Path, tmp_path: Path, content: str, mode: int, why: str
) -> None:
    management_secret = tmp_path / "management-secret"
    management_secret.write_text(content)
    management_secret.chmod(mode)
    options = ["--port", "0", "--secret-file", str(secret_file)]
    ran = subprocess.run(
        [str(GATEWAY), *options, "--management-secret-file", str(management_secret)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 2
    assert ran.stdout == ""
    assert ran.stderr.startswith("signaling-gateway: the ")
    assert why in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    assert content.strip() not in ran.stderr
