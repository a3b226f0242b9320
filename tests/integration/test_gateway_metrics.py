"""The local gateway's Prometheus metrics, scraped over HTTP as Prometheus scrapes them."""

import asyncio
import socket
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from lab import token
from lab.gateway import GATEWAY
from lab.waiting import eventually
from lab.ws import identify, open_ws, recv_json, request, send_json
from tests.support.integration import StartGateway


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SENDS = (("route", "sendSignal"),)


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_connections_messages_errors_and_handling_time_are_counted(
    start_gateway: StartGateway,
) -> None:
    port = free_port()
    gateway = start_gateway("--metrics-address", f"127.0.0.1:{port}")
    gateway.wait_for_log(rf"Metrics: http://127.0.0.1:{port}/metrics")
    before = await asyncio.to_thread(scrape, port)
    assert before["signaling_gateway_open_connections", ()] == 0

    async with await open_ws(gateway.url, token()) as ws:
        await identify(ws)
        assert (await request(ws, {"action": "ping"}))["action"] == "pong"
        await send_json(ws, {"action": "sendSignal", "to": "laptop", "data": {}})
        assert (await recv_json(ws))["error"] == "backend_unreachable"

        async def handled() -> Samples | None:
            # A handler's time is observed once it returns, just after its reply went out.
            samples = await asyncio.to_thread(scrape, port)
            done = samples.get(("signaling_gateway_handling_seconds_count", SENDS), 0) == 2
            return samples if done else None

        during = await eventually(handled, "the second sendSignal's handling observed")
        assert during is not None

    assert during["signaling_gateway_open_connections", ()] == 1
    assert during["signaling_gateway_messages_total", (("route", "ping"),)] == 1
    assert during["signaling_gateway_messages_total", (("route", "sendSignal"),)] == 2
    assert during["signaling_gateway_handling_seconds_count", (("route", "sendSignal"),)] == 2
    assert during["signaling_gateway_errors_total", (("code", "backend_unreachable"),)] == 1
    # identify's answer, the pong and the error: each posted to the client.
    assert during["signaling_gateway_messages_delivered_total", ()] == 3


def test_a_metrics_port_in_use_is_one_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [str(GATEWAY), "--port", "0", "--no-auth", "--metrics-address", f"127.0.0.1:{port}"]
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    [said] = [line for line in refused.stderr.splitlines() if "metrics" in line]
    assert said.startswith(f"signaling-gateway: cannot serve metrics on 127.0.0.1:{port}: ")
    assert said.endswith("address already in use; choose another --metrics-address.")
    assert "Traceback" not in refused.stderr
