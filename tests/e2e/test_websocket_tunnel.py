"""An http:// service's WebSocket through the bridge (framing version 2): lab/wsclient.py in
the client's namespace, the daemon and an aiohttp app with a WebSocket echo on the homelab."""

import asyncio
import hashlib
import json
import random
from typing import Any

from lab.bridge import LoggedProcess, client_args, write_daemon_config
from lab.netns import venv_bin
from tests.e2e.conftest import LanLab
from tests.support.webapp import web_app

PORT = 8080


async def wsclient(lan: LanLab, path: str, *args: str) -> list[dict[str, Any]]:
    argv = [venv_bin("python"), "-m", "lab.wsclient", "web", path, *args]
    done = await asyncio.to_thread(
        lan.client.run, *argv, *client_args(lan.signaling_url), check=False
    )
    assert done.returncode == 0, done
    assert "Traceback" not in done.stderr, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def sent_binary(sizes: list[int]) -> list[dict[str, Any]]:
    seeded = random.Random(7)  # as lab/wsclient.py makes them
    return [
        {"binary": size, "sha256": hashlib.sha256(seeded.randbytes(size)).hexdigest()}
        for size in sizes
    ]


async def test_text_and_binary_messages_of_any_size_go_both_ways(lan: LanLab) -> None:
    async with web_app(lan.homelab, PORT):
        daemon = await lan.start_daemon({"web": f"http://127.0.0.1:{PORT}"})
        sizes = [0, 1, 16 * 1024, 300 * 1024, 1024 * 1024]  # pieces of 16 KiB, the limit
        said = await wsclient(
            lan, "/ws", "--protocol", "echo", "--text", "héllo",
            *(f"--binary-size={size}" for size in sizes), "--close-code", "4000",
        )  # fmt: skip
        assert said[0] == {"protocol": "echo"}
        received = [line for line in said[1:] if "sent" not in line]
        assert received == [{"text": "héllo"}, *sent_binary(sizes), {"closed": [4000, "done"]}]
        await daemon.logged(r"on 'web': WebSocket /ws open")
        await daemon.logged(r"on 'web': WebSocket /ws closed \(4000\)")


async def test_the_service_closing_reaches_the_client_with_its_code(lan: LanLab) -> None:
    async with web_app(lan.homelab, PORT):
        await lan.start_daemon({"web": f"http://127.0.0.1:{PORT}"})
        said = await wsclient(lan, "/ws", "--text", "close 4001")
        assert said[-1] == {"closed": [4001, "closed by the service"]}


async def test_a_message_past_the_limit_closes_with_1009(lan: LanLab) -> None:
    async with web_app(lan.homelab, PORT):
        daemon = await lan.start_daemon({"web": f"http://127.0.0.1:{PORT}"})
        said = await wsclient(lan, "/ws", f"--binary-size={1024 * 1024 + 1}")
        assert said[-1] == {"closed": [1009, "a WebSocket message is longer than 1048576 bytes"]}, (
            said
        )
        await daemon.logged(r"WebSocket /ws: closing with 1009: a WebSocket message is longer")


async def test_a_refused_upgrade_passes_the_services_status_on(lan: LanLab) -> None:
    async with web_app(lan.homelab, PORT):
        await lan.start_daemon({"web": f"http://127.0.0.1:{PORT}"})
        said = await wsclient(lan, "/missing")
        assert said == [{"error": "the service refused the WebSocket: HTTP 404 Not Found"}]


async def test_a_homelab_before_websockets_is_named_as_the_cause(lan: LanLab) -> None:
    config = write_daemon_config(
        lan.workdir / "v1.yml", lan.signaling_url, {"web": f"http://127.0.0.1:{PORT}"}
    )
    argv = [venv_bin("python"), "-m", "lab.framing_v1_daemon", "--config", str(config)]
    async with web_app(lan.homelab, PORT):
        daemon = LoggedProcess(lan.homelab, argv, lan.workdir / "v1.log")
        try:
            await daemon.logged(r"Registered as 'laptop'")
            said = await wsclient(lan, "/ws")
            assert said == [
                {
                    "error": "the homelab's bridge does not tunnel WebSockets (it predates "
                    "framing version 2); update homelab-p2p-bridge on the homelab"
                }
            ]
            # Its plain requests still work with this client.
            fetched = await asyncio.to_thread(
                lan.client.run, venv_bin("homelab-p2p"), "fetch", "web", "/",
                *client_args(lan.signaling_url), check=False,
            )  # fmt: skip
            assert fetched.returncode == 0, fetched
            assert "Hello from the homelab" in fetched.stdout
        finally:
            daemon.stop()
