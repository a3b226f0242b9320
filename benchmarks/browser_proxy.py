"""The browser proxy in Chromium: a page of 50 subresources and a download, proxied and direct.

    sudo .venv/bin/python -m benchmarks.browser_proxy [--loads 7] [--downloads 3] [--megabytes 50]

The veth lab of benchmarks/veth.py: "home" (10.99.0.1) runs the gateway (console on 8765,
app origin on 8767), homelab_server and a web app listening on every address of "home" on
port 8080; headless Chromium runs in "client". The console (proxy.html) connects and opens
the app (service ``web``) in a frame; a second frame of the console loads the same app
straight over the veth (``http://10.99.0.1:8080``). Runs alternate between the two, so both
see the same machine at the same moment:

- page: ``/page?run=N``, an HTML page with 50 subresources (20 images, 15 stylesheets, 15
  scripts of 4 KiB, none cacheable); the time from the navigation's start to its load event
  (the frame's Navigation Timing), ``--loads`` times each;
- download: ``/big`` (``--megabytes`` MB) read whole by the frame's ``fetch``, ``--downloads``
  times each; and the same through ``bridge.fetch`` of wss-webrtc.js in the console itself
  (the data channel without the service worker and the console's relaying).

Prints the medians, the proxy's ratio to direct, and one JSON line. Needs root.
"""

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from benchmarks.report import machine_description, needs_root, print_rows, report
from benchmarks.veth import HOME_IP, SIGNALING, veth_lab
from lab import default_client_file
from lab.bridge import start_daemon, write_daemon_config
from lab.chromium import Chromium
from lab.netns import Namespace
from lab.waiting import eventually
from lab.websites import serving

APP_PORT = 8080
CONSOLE = f"http://{HOME_IP}:8765"
APPS = f"http://{HOME_IP}:8767"
DIRECT = f"http://{HOME_IP}:{APP_PORT}"
SUBRESOURCE = b"/* filler */" * 341  # 4 KiB
WAIT_S = 120.0


def page(run: str) -> str:
    parts = [f'<link rel="stylesheet" href="/r/s{i}.css?run={run}">' for i in range(15)]
    parts += [f'<img src="/r/i{i}.svg?run={run}" width="8" height="8" alt="">' for i in range(20)]
    parts += [f'<script src="/r/j{i}.js?run={run}"></script>' for i in range(15)]
    return "<!doctype html><html><head><title>50</title></head><body>" + "".join(parts)


@contextlib.asynccontextmanager
async def web_app(home: Namespace, megabytes: int) -> AsyncIterator[None]:
    big = bytes(megabytes * 1024 * 1024)
    no_store = {"Cache-Control": "no-store"}

    async def serve_page(request: web.Request) -> web.Response:
        html = page(request.query.get("run", "0"))
        return web.Response(text=html, content_type="text/html", headers=no_store)

    async def resource(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = {"s": "text/css", "j": "text/javascript"}.get(name[0], "image/svg+xml")
        body = (
            b'<svg xmlns="http://www.w3.org/2000/svg"><!--' + SUBRESOURCE + b"--></svg>"
            if kind == "image/svg+xml"
            else SUBRESOURCE
        )
        return web.Response(body=body, content_type=kind, headers=no_store)

    async def serve_big(_: web.Request) -> web.Response:
        return web.Response(body=big, content_type="application/octet-stream", headers=no_store)

    app = web.Application()
    app.router.add_get("/page", serve_page)
    app.router.add_get("/r/{name}", resource)
    app.router.add_get("/big", serve_big)
    async with serving(app, home, APP_PORT, host="0.0.0.0"):
        yield


async def open_console(browser: Chromium) -> None:
    fragment = f"url={SIGNALING}&target=laptop&ice=[]"
    await browser.goto(f"{CONSOLE}/proxy.html#{fragment}")
    credential = json.dumps(default_client_file().read_text())
    await browser.evaluate(
        f"document.getElementById('credential').value = {credential};"
        "document.getElementById('connect').click()"
    )

    async def ready() -> bool:
        state = "document.getElementById('link-state').textContent"
        opened = "!document.getElementById('open').disabled"
        return bool(await browser.evaluate(f"{state} === 'direct' && {opened}"))

    await eventually(ready, "the console connecting", WAIT_S)
    await browser.evaluate(
        f"""document.getElementById('service').value = 'web';
        document.getElementById('path').value = '/page?run=first';
        document.getElementById('open').click();
        const direct = document.createElement('iframe');
        direct.name = 'direct';
        direct.src = '{DIRECT}/page?run=first';
        document.getElementById('views').append(direct);"""
    )


FRAMES = {"proxy": ("app-web", f"{APPS}/app/web"), "direct": ("direct", DIRECT)}


async def load_ms(browser: Chromium, way: str, run: str) -> float:
    """One load of the 50-subresource page in ``way``'s frame: navigation start to load."""
    name, base = FRAMES[way]
    url = f"{base}/page?run={run}"
    await browser.evaluate(f"document.querySelector('iframe[name=\"{name}\"]').src = '{url}'")
    # Counted once the load event has run and every subresource is in the timeline.
    timing = (
        "performance.getEntriesByType('resource').length >= 50"
        " && performance.getEntriesByType('navigation')[0]?.loadEventEnd"
    )
    ms = await eventually(lambda: browser.evaluate_in_frame(url, timing), f"{url} loading", WAIT_S)
    return float(ms)


DOWNLOAD = """(async () => {
  const started = performance.now();
  const response = await FETCH;
  const reader = response.body.getReader();
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.length;
  }
  return [bytes, performance.now() - started];
})()"""


async def download_mbps(browser: Chromium, way: str, megabytes: int) -> float:
    if way == "bridge.fetch":
        expression = DOWNLOAD.replace("FETCH", "window.reference.fetch('web', '/big')")
        got, ms = await browser.evaluate(expression)
    else:
        base = FRAMES[way][1]
        expression = DOWNLOAD.replace("FETCH", "fetch('/big')")
        got, ms = await browser.evaluate_in_frame(f"{base}/page", expression)
    if got != megabytes * 1024 * 1024:
        raise RuntimeError(f"{way}: {got} bytes arrived, not {megabytes} MB")
    return float(megabytes / (ms / 1000))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("chromium") is None:
        raise SystemExit("chromium is not installed (make system-deps installs it)")
    with veth_lab("p", "bench-proxy-", 7007, 7008) as built:
        built.client.run("ip", "route", "add", "default", "via", HOME_IP)
        async with web_app(built.home, args.megabytes):
            config = write_daemon_config(
                built.workdir / "proxy.yml",
                SIGNALING,
                {"web": f"http://127.0.0.1:{APP_PORT}"},
                log_level="INFO",
            )
            daemon = await start_daemon(built.home, config, built.workdir / "daemon.log")
            browser = Chromium(built.client, built.workdir, secure_origins=[CONSOLE, APPS])
            await browser.start()
            try:
                await open_console(browser)
                options = {"url": SIGNALING, "credential": default_client_file().read_text()}
                await browser.evaluate(
                    f"""(async () => {{ const {{ connect }} = await import('/wss-webrtc.js');
                    window.reference = await connect({json.dumps(options)}); }})()"""
                )
                loads: dict[str, list[float]] = {"direct": [], "proxy": []}
                for n in range(args.loads):
                    for way, times in loads.items():
                        times.append(await load_ms(browser, way, f"{way}{n}"))
                downloads: dict[str, list[float]] = {"direct": [], "bridge.fetch": [], "proxy": []}
                for _ in range(args.downloads):
                    for way, rates in downloads.items():
                        rates.append(await download_mbps(browser, way, args.megabytes))
            finally:
                await browser.stop()
                daemon.stop()
    return summary(loads, downloads, args)


def summary(
    loads: dict[str, list[float]], downloads: dict[str, list[float]], args: argparse.Namespace
) -> dict[str, Any]:
    load_median = {way: statistics.median(values) for way, values in loads.items()}
    download_median = {way: statistics.median(values) for way, values in downloads.items()}
    return {
        "benchmark": "browser_proxy",
        "machine": machine_description(),
        "page": {
            "subresources": 50,
            "loads": args.loads,
            "ms": {way: [round(v, 1) for v in values] for way, values in loads.items()},
            "median_ms": {way: round(v, 1) for way, v in load_median.items()},
            "proxy_to_direct": round(load_median["proxy"] / load_median["direct"], 2),
        },
        "download": {
            "megabytes": args.megabytes,
            "runs": args.downloads,
            "mb_per_s": {way: [round(v, 1) for v in values] for way, values in downloads.items()},
            "median_mb_per_s": {way: round(v, 1) for way, v in download_median.items()},
            "proxy_to_direct": round(download_median["proxy"] / download_median["direct"], 3),
            "proxy_to_bridge_fetch": round(
                download_median["proxy"] / download_median["bridge.fetch"], 2
            ),
        },
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\nbrowser proxy in Chromium on a veth pair: {result['machine']}\n")
    page_result = result["page"]
    print(f"a page with 50 subresources, {page_result['loads']} loads each (ms, median)")
    print_rows(
        [("way", "way", 14), ("median ms", "ms", 11), ("to direct", "ratio", 11)],
        [
            {"way": way, "ms": ms, "ratio": round(ms / page_result["median_ms"]["direct"], 2)}
            for way, ms in page_result["median_ms"].items()
        ],
    )
    download = result["download"]
    print(
        f"\n{download['megabytes']} MB read by fetch, {download['runs']} runs each (MB/s, median)"
    )
    direct = download["median_mb_per_s"]["direct"]
    print_rows(
        [("way", "way", 14), ("MB/s", "rate", 11), ("to direct", "ratio", 11)],
        [
            {"way": way, "rate": rate, "ratio": round(rate / direct, 3)}
            for way, rate in download["median_mb_per_s"].items()
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=7, help="page loads each way (default: 7)")
    parser.add_argument("--downloads", type=int, default=3, help="downloads each way (default: 3)")
    parser.add_argument("--megabytes", type=int, default=50, help="download size (default: 50)")
    args = parser.parse_args()
    needs_root("benchmarks.browser_proxy")
    report(asyncio.run(run(args)), print_table)


if __name__ == "__main__":
    main()
