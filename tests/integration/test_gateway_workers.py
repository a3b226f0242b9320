"""The gateway's handler workers: order per connection, one registry, losing a worker."""

import asyncio
import signal

import psutil

from lab import token
from lab.gateway import GatewayProcess
from lab.ws import identify, open_ws, recv_json, request, send_json
from tests.support.integration import StartGateway

GUIDE_MESSAGE = "The target (homelab_server) is not currently connected"


def workers_of(gateway: GatewayProcess) -> list[psutil.Process]:
    return psutil.Process(gateway.process.pid).children()


async def test_a_connections_messages_are_answered_in_the_order_sent(
    start_gateway: StartGateway,
) -> None:
    """Sent back to back, without waiting for answers: the gateway hands them on before
    the earlier ones are handled, and the answers still come in order."""
    gateway = start_gateway("--handler-workers", "2", "--rate-limit", "0")
    assert len(workers_of(gateway)) == 2
    async with await open_ws(gateway.url, token()) as ws:
        my_id = await identify(ws)
        for n in range(300):
            await send_json(ws, {"action": "sendSignal", "to": "me", "data": n})
        answers = [await recv_json(ws) for _ in range(300)]
    assert answers == [
        {"action": "sendSignal", "from": my_id, "to": "me", "data": n} for n in range(300)
    ]


async def test_what_one_worker_registers_every_worker_relays_to(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway("--handler-workers", "2")
    homelab_token = token("homelab", "laptop")
    homelab = await open_ws(gateway.url, homelab_token)
    registered = await request(
        homelab, {"action": "register", "name": "laptop", "token": homelab_token}
    )
    # Clients connect one after the other, each to the least busy worker: both are used.
    clients = [await open_ws(gateway.url, token("client", f"c{n}")) for n in range(6)]
    for n, client in enumerate(clients):
        await send_json(client, {"action": "sendSignal", "to": "laptop", "data": {"n": n}})
    offers = sorted([(await recv_json(homelab))["data"]["n"] for _ in clients])
    assert offers == list(range(6))

    # The homelab goes; the next relay finds it stale, drops it, and tells the client.
    await homelab.close()
    gateway.wait_for_log(rf"Connection {registered['connectionId']} disconnected")
    reply = await request(clients[0], {"action": "sendSignal", "to": "laptop", "data": {}})
    assert reply == {"error": "backend_unreachable", "message": GUIDE_MESSAGE, "target": "laptop"}
    gateway.wait_for_log(r"Dropped the stale registration of 'laptop'")
    reply = await request(clients[1], {"action": "sendSignal", "to": "laptop", "data": {}})
    assert reply["error"] == "backend_unreachable"
    for client in clients:
        await client.close()


async def test_a_lost_worker_fails_only_its_own_messages_and_the_last_one_stops_the_gateway(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway("--handler-workers", "2")
    first, second = workers_of(gateway)
    first.send_signal(signal.SIGKILL)
    gateway.wait_for_log(rf"Handler worker 0 \(pid {first.pid}\) is gone: .*1 workers left")
    async with await open_ws(gateway.url, token()) as ws:
        assert await request(ws, {"action": "sendSignal", "to": "me", "data": "still"}) == {
            "action": "sendSignal",
            "from": await identify(ws),
            "to": "me",
            "data": "still",
        }
        second.send_signal(signal.SIGKILL)
        gateway.wait_for_log(r"Handler worker 1 .* is gone: .*0 workers left")
    status = await asyncio.to_thread(gateway.process.wait, 20)
    assert status == 1
    assert "every handler worker is gone" in gateway.log()


async def test_the_old_path_runs_the_handler_in_threads_and_calls_over_http(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway("--handler-workers", "0")
    assert workers_of(gateway) == []
    async with await open_ws(gateway.url, token()) as ws:
        reply = await request(ws, {"action": "sendSignal", "to": "me", "data": "test"})
    assert reply["data"] == "test"
