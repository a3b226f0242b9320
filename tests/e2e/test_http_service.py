"""http:// services: framed requests over a data channel (docs/data-channels.md), via `fetch`."""

import asyncio
import random

from lab.bridge import client_args
from lab.netns import venv_bin
from tests.e2e.conftest import LanLab
from tests.e2e.test_status import scrape
from tests.support.webapp import BIG, TEXT, web_app


async def fetch(lan: LanLab, *args: str) -> tuple[int, str]:
    argv = [venv_bin("homelab-p2p"), "fetch", "web", *args, *client_args(lan.signaling_url)]
    result = await asyncio.to_thread(lan.client.run, *argv, check=False)
    return result.returncode, result.stderr


async def test_requests_and_responses_of_any_size_pass_through(lan: LanLab) -> None:
    async with web_app(lan.homelab, 8080):
        await lan.start_daemon({"web": "http://127.0.0.1:8080"}, metrics_address="127.0.0.1:9808")
        out = lan.workdir / "big.bin"
        assert await fetch(lan, "/big", "-o", str(out)) == (0, "")
        assert out.read_bytes() == BIG
        counted = await scrape(lan.homelab, 9808)  # the bodies, counted as the channel ended
        assert counted("homelab_p2p_service_bytes_total", service="web", direction="out") == len(
            BIG
        )
        assert counted("homelab_p2p_service_bytes_total", service="web", direction="in") == 0

        posted = random.Random(2).randbytes(3 * 1024 * 1024)
        (lan.workdir / "post.bin").write_bytes(posted)
        out = lan.workdir / "echo.bin"
        code, _ = await fetch(
            lan, "/echo", "--data-file", str(lan.workdir / "post.bin"), "-i", "-o", str(out)
        )
        assert code == 0
        head, _, body = out.read_bytes().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP 200 OK")
        assert b"X-Method: POST" in head
        assert body == posted

        out = lan.workdir / "text.txt"
        assert (await fetch(lan, "/text", "-o", str(out)))[0] == 0
        assert out.read_bytes() == TEXT  # decompressed on the homelab; encoding headers dropped


async def test_status_codes_pass_through(lan: LanLab) -> None:
    async with web_app(lan.homelab, 8080):
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        out = lan.workdir / "missing.txt"
        assert (await fetch(lan, "/missing", "-i", "-o", str(out)))[0] == 0
        assert out.read_bytes().startswith(b"HTTP 404 Not Found\r\n")
        assert (await fetch(lan, "/missing", "--fail", "-o", str(out)))[0] == 22


async def test_an_unreachable_web_service_is_reported(lan: LanLab) -> None:
    daemon = await lan.start_daemon({"web": "http://127.0.0.1:8099"})
    code, stderr = await fetch(lan, "/")
    assert code == 1
    assert "'web': service_unavailable: http://127.0.0.1:8099" in stderr
    await daemon.logged(r"\[WARNING\] Service 'web' \(http://127.0.0.1:8099\) failed a request")


async def test_a_reader_that_goes_away_stops_fetch_quietly(lan: LanLab) -> None:
    """`homelab-p2p fetch web /big | head -c 100`: no traceback, curl's status 23."""
    async with web_app(lan.homelab, 8080):
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        argv = [venv_bin("homelab-p2p"), "fetch", "web", "/big", *client_args(lan.signaling_url)]
        pipeline = " ".join(argv) + " | head -c 100 >/dev/null; exit ${PIPESTATUS[0]}"
        result = await asyncio.to_thread(lan.client.run, "bash", "-c", pipeline, check=False)
    assert result.returncode == 23
    assert result.stderr == ""
