"""The troubleshooting guide's testing procedure, against a gateway started as users start it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import SECRET, token
from lab.gateway import GatewayProcess
from lab.ws import identify, open_ws, recv_json, request, send_json
from p2p_protocol.tokens import reply_ticket
from tests.support.integration import StartGateway

CLI = Path(sys.executable).with_name("homelab-p2p")
GUIDE_MESSAGE = "The target (homelab_server) is not currently connected"
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"}


@pytest.fixture(params=["handler workers", "handler threads"])
def gateway(request: pytest.FixtureRequest, start_gateway: StartGateway) -> GatewayProcess:
    """The guide holds on both of the gateway's paths: handler workers with the management
    API in process (the default), and threads calling it over HTTP (the old path)."""
    return start_gateway(
        *(["--handler-workers", "0"] if request.param == "handler threads" else [])
    )


async def register_homelab(gateway: GatewayProcess, name: str = "laptop"):  # type: ignore[no-untyped-def]
    homelab_token = token("homelab", name)
    ws = await open_ws(gateway.url, homelab_token)
    reply = await request(ws, {"action": "register", "name": name, "token": homelab_token})
    assert reply["action"] == "registered"
    assert reply["name"] == name
    return ws, reply["connectionId"]


async def test_1_websocket_connects_and_the_log_shows_it(gateway: GatewayProcess) -> None:
    ws = await open_ws(gateway.url, token())
    await ws.close()
    gateway.wait_for_log(
        r"\[INFO\] ===== Lambda Handler Started =====\n\[DEBUG\] RouteKey: \$connect\n"
        r"(\[DEBUG\] .*\n)?\[INFO\] Connection allowed, returning 200"
    )


async def test_manual_echo_returns_the_same_message(gateway: GatewayProcess) -> None:
    """Step 4: send {"action":"sendSignal","to":"me","data":"test"}, get it back."""
    async with await open_ws(gateway.url, token()) as ws:
        my_id = await identify(ws)
        reply = await request(ws, {"action": "sendSignal", "to": "me", "data": "test"})
    assert reply == {"action": "sendSignal", "from": my_id, "to": "me", "data": "test"}


async def test_identify_answers_the_connection_id(gateway: GatewayProcess) -> None:
    async with await open_ws(gateway.url, token()) as ws:
        reply = await request(ws, {"action": "sendSignal", "to": "me", "data": "identify"})
    assert reply["action"] == "connected"
    assert reply["to"] == "me"
    assert reply["from"] == reply["data"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{15}=", reply["data"])


async def test_2_registered_homelab_gets_the_offer_and_its_answer_reaches_the_client(
    gateway: GatewayProcess,
) -> None:
    homelab, homelab_id = await register_homelab(gateway)
    gateway.wait_for_log(rf"Registered 'laptop': LAPTOP_ID is now {re.escape(homelab_id)}")
    client = await open_ws(gateway.url, token())
    client_id = await identify(client)

    await send_json(client, {"action": "sendSignal", "to": "laptop", "data": OFFER})
    offer = await recv_json(homelab)
    assert offer == {
        "action": "sendSignal",
        "from": client_id,
        "to": "laptop",
        "data": OFFER,
        "ticket": reply_ticket(SECRET, "laptop", client_id),  # what lets laptop answer
    }
    # The offer's invocation writes its last line after the homelab has the offer: the
    # answer waits for it, so the two invocations' lines do not interleave in the log.
    gateway.wait_for_log(
        r"\[INFO\] Processing sendSignal route\n"
        rf"\[DEBUG\] LAPTOP_ID registry entry is set: {re.escape(homelab_id)}\n"
        r"\[INFO\] Verifying LAPTOP_ID connection is alive\.\.\.\n"
        r"\[INFO\] LAPTOP_ID connection verified as alive\n"
        rf"\[INFO\] Relayed offer from {re.escape(client_id)} to laptop"
    )

    answer_signal = {"action": "sendSignal", "to": offer["from"], "data": ANSWER}
    await send_json(homelab, {**answer_signal, "ticket": offer["ticket"]})
    answer = await recv_json(client)
    assert answer == {"action": "sendSignal", "from": homelab_id, "to": client_id, "data": ANSWER}
    await client.close()
    await homelab.close()


async def test_2_a_signal_given_as_a_json_string_is_relayed_as_is(gateway: GatewayProcess) -> None:
    homelab, _ = await register_homelab(gateway)
    async with await open_ws(gateway.url, token()) as client:
        as_string = '{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}'
        await send_json(client, {"action": "sendSignal", "to": "laptop", "data": as_string})
        assert (await recv_json(homelab))["data"] == as_string
    await homelab.close()


async def test_3_without_homelab_the_client_is_told_and_the_log_says_why(
    gateway: GatewayProcess,
) -> None:
    async with await open_ws(gateway.url, token()) as client:
        reply = await request(client, {"action": "sendSignal", "to": "laptop", "data": OFFER})
    assert reply == {"error": "backend_unreachable", "message": GUIDE_MESSAGE, "target": "laptop"}
    gateway.wait_for_log(
        r"\[DEBUG\] LAPTOP_ID registry entry is not set.*\n"
        r"\[ERROR\] Target connection laptop does not exist \(homelab_server not connected\)\n"
        r"\[INFO\] Sent error notification to sender"
    )


async def test_3_homelab_that_went_away_is_detected_as_stale(gateway: GatewayProcess) -> None:
    """The guide's Test 3: LAPTOP_ID still holds the id of a homelab that is gone."""
    homelab, homelab_id = await register_homelab(gateway)
    await homelab.close()
    gateway.wait_for_log(rf"Connection {re.escape(homelab_id)} disconnected")

    async with await open_ws(gateway.url, token()) as client:
        reply = await request(client, {"action": "sendSignal", "to": "laptop", "data": OFFER})
        assert reply == {
            "error": "backend_unreachable",
            "message": GUIDE_MESSAGE,
            "target": "laptop",
        }
        gateway.wait_for_log(
            r"\[INFO\] Verifying LAPTOP_ID connection is alive\.\.\.\n"
            r"\[WARNING\] LAPTOP_ID connection is stale \(homelab_server not connected\)\n"
            rf"\[INFO\] Dropped the stale registration of 'laptop' \({re.escape(homelab_id)}\)\n"
            rf"\[ERROR\] Target connection {re.escape(homelab_id)} does not exist "
            r"\(homelab_server not connected\)\n"
            r"\[INFO\] Sent error notification to sender"
        )
        # The stale entry is gone: the next attempt does not check the old id again.
        mark = len(gateway.log())
        again = await request(client, {"action": "sendSignal", "to": "laptop", "data": OFFER})
        assert again["error"] == "backend_unreachable"
        gateway.wait_for_log("Sent error notification to sender")
        assert "LAPTOP_ID registry entry is not set" in gateway.log()[mark:]


async def test_a_new_registration_replaces_the_old_one(gateway: GatewayProcess) -> None:
    old, _ = await register_homelab(gateway)
    new, new_id = await register_homelab(gateway)
    async with await open_ws(gateway.url, token()) as client:
        await send_json(client, {"action": "sendSignal", "to": "laptop", "data": OFFER})
        assert (await recv_json(new))["data"] == OFFER
    await old.close()
    await new.close()
    assert new_id


async def test_homelab_answers_a_client_that_left_and_is_told(gateway: GatewayProcess) -> None:
    homelab, _ = await register_homelab(gateway)
    client = await open_ws(gateway.url, token())
    client_id = await identify(client)
    await send_json(client, {"action": "sendSignal", "to": "laptop", "data": OFFER})
    ticket = (await recv_json(homelab))["ticket"]
    await client.close()
    gateway.wait_for_log(rf"Connection {re.escape(client_id)} disconnected")
    answer = {"action": "sendSignal", "to": client_id, "data": ANSWER, "ticket": ticket}
    reply = await request(homelab, answer)
    assert reply == {"error": "backend_unreachable", "message": GUIDE_MESSAGE, "target": client_id}
    await homelab.close()


async def test_ping_answers_pong(gateway: GatewayProcess) -> None:
    async with await open_ws(gateway.url, token()) as ws:
        my_id = await identify(ws)
        assert await request(ws, {"action": "ping"}) == {"action": "pong", "connectionId": my_id}


def test_homelab_p2p_echo_does_the_manual_test_in_one_command(gateway: GatewayProcess) -> None:
    """Exit 0 with the round trip, 3 when unreachable, 1 when signaling refuses."""

    def echo(url: str, client_token: str) -> subprocess.CompletedProcess[str]:
        argv = [str(CLI), "echo", "--signaling-url", url, "--token", client_token]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    ok = echo(gateway.url, token())
    assert ok.returncode == 0, ok.stderr
    assert re.fullmatch(
        rf"Echo from {re.escape(gateway.url)}: connected in \d+ ms, round trip \d+ ms, "
        r"connection id \S+=\n",
        ok.stdout,
    )
    gateway.wait_for_log(r"\[DEBUG\] RouteKey: sendSignal")

    unreachable = echo("ws://127.0.0.1:9/prod", token())
    assert unreachable.returncode == 3
    assert "WebSocket connection failed: cannot reach ws://127.0.0.1:9/prod" in unreachable.stderr

    refused = echo(gateway.url, "hp1.forged.token")
    assert refused.returncode == 1
    assert "refused the token (HTTP 401)" in refused.stderr
    assert "Traceback" not in ok.stderr + unreachable.stderr + refused.stderr
