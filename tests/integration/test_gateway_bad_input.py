"""Bad input gets an error object and one WARNING line, and the gateway keeps serving."""

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosedError

from lab import token
from lab.gateway import GatewayProcess
from lab.ws import identify, open_ws, recv_json, request
from tests.support.integration import StartGateway

BAD_MESSAGES: list[tuple[str, str | bytes, str]] = [
    ("not-json", "hello there", "invalid_json"),
    ("empty", "", "invalid_json"),
    ("array", "[1, 2, 3]", "bad_request"),
    ("null", "null", "bad_request"),
    ("no-action", '{"to": "me", "data": 1}', "bad_request"),
    ("unknown-action", '{"action": "launchMissiles"}', "unknown_action"),
    ("action-not-string", '{"action": ["sendSignal"]}', "unknown_action"),
    ("send-without-to", '{"action": "sendSignal", "data": 1}', "bad_request"),
    ("send-to-number", '{"action": "sendSignal", "to": 5, "data": 1}', "bad_request"),
    ("send-without-data", '{"action": "sendSignal", "to": "me"}', "bad_request"),
    ("register-bad-name", '{"action": "register", "name": "../etc"}', "bad_request"),
    (
        "register-token-number",
        '{"action": "register", "name": "laptop", "token": 7}',
        "bad_request",
    ),
    (
        "deep-nesting",
        '{"action": "sendSignal", "to": "me", "data": ' + "[" * 5000 + "]" * 5000 + "}",
        "bad_request",
    ),
    (
        "oversized-data",
        json.dumps({"action": "sendSignal", "to": "me", "data": "x" * 70000}),
        "payload_too_large",
    ),
    ("binary-frame", b"\x00\x01binary", "bad_request"),
]


async def test_each_bad_message_gets_its_error_and_the_connection_keeps_working(
    gateway: GatewayProcess,
) -> None:
    async with await open_ws(gateway.url, token()) as ws:
        my_id = await identify(ws)
        for label, message, code in BAD_MESSAGES:
            mark = len(gateway.log())
            await ws.send(message)
            reply = await recv_json(ws)
            assert reply.get("error") == code, (label, reply)
            assert isinstance(reply.get("message"), str), (label, reply)
            echo = await request(ws, {"action": "sendSignal", "to": "me", "data": label})
            assert echo == {"action": "sendSignal", "from": my_id, "to": "me", "data": label}
            warnings = [
                line for line in gateway.log_lines_since(mark) if line.startswith("[WARNING]")
            ]
            assert len(warnings) == 1, (label, warnings)


async def test_odd_unicode_is_relayed_or_escaped_never_fatal(gateway: GatewayProcess) -> None:
    async with await open_ws(gateway.url, token()) as ws:
        for data in ["\u202e\u0000\ufeff", "emoji 🛰️ and 汉字", "\ud800 lone surrogate"]:
            reply = await request(ws, {"action": "sendSignal", "to": "me", "data": data})
            assert reply["data"] == data


async def test_a_message_over_128_kib_closes_with_1009_and_others_carry_on(
    gateway: GatewayProcess,
) -> None:
    bystander = await open_ws(gateway.url, token())
    async with await open_ws(gateway.url, token()) as ws:
        at_limit = json.dumps({"action": "sendSignal", "to": "me", "data": ""})
        at_limit = at_limit.replace(
            '"data": ""', '"data": "' + "x" * (131072 - len(at_limit)) + '"'
        )
        assert len(at_limit) == 131072
        await ws.send(at_limit)  # exactly the limit: handled (its data is too large to relay)
        assert (await recv_json(ws))["error"] == "payload_too_large"
        await ws.send(at_limit + " ")
        with pytest.raises(ConnectionClosedError) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    gateway.wait_for_log(
        r"\[WARNING\] Closed connection \S+ with 1009: it sent a message over 131072 bytes"
    )
    assert (await request(bystander, {"action": "ping"}))["action"] == "pong"
    await bystander.close()


async def test_messages_of_one_connection_are_handled_in_order(gateway: GatewayProcess) -> None:
    async with await open_ws(gateway.url, token()) as ws:
        for n in range(60):
            await ws.send(json.dumps({"action": "sendSignal", "to": "me", "data": n}))
        replies = [(await recv_json(ws))["data"] for _ in range(60)]
    assert replies == list(range(60))


async def test_rate_limit_answers_rate_limited_past_the_burst(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--rate-limit", "5")
    async with await open_ws(gateway.url, token()) as ws:
        for n in range(40):
            await ws.send(json.dumps({"action": "sendSignal", "to": "me", "data": n}))
        replies = [await recv_json(ws) for _ in range(40)]
    limited = [r for r in replies if r.get("error") == "rate_limited"]
    echoed = [r["data"] for r in replies if r.get("action") == "sendSignal"]
    assert echoed[:10] == list(range(10))  # the burst (twice the rate) goes through
    assert limited, replies
    assert "at most 5 per second" in limited[0]["message"]
    gateway.wait_for_log(r"\[WARNING\] Connection \S+ sends more than 5 messages per second")
    assert gateway.log().count("sends more than 5 messages per second") == 1
    # Below what the project's own links send, it says so once, at start.
    assert (
        gateway.log().count(
            "[WARNING] --rate-limit 5 is below the 90 messages a second a homelab's signaling link "
            "may send: a homelab answering many clients at once will have answers refused; use 90 "
            "or more (or 0 for no limit)"
        )
        == 1
    )


def test_the_default_rate_limit_is_above_the_links_pace(gateway: GatewayProcess) -> None:
    assert "--rate-limit" not in gateway.log()


async def test_many_clients_at_once_are_all_served(gateway: GatewayProcess) -> None:
    async def one_client(n: int) -> int:
        async with await open_ws(gateway.url, token(name=f"c{n}")) as ws:
            return int((await request(ws, {"action": "sendSignal", "to": "me", "data": n}))["data"])

    assert sorted(await asyncio.gather(*(one_client(n) for n in range(40)))) == list(range(40))
