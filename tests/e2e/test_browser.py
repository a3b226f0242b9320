"""frontend/wss-webrtc.js in Debian's Chromium, headless, in a network namespace of its own.

The page is served by the gateway (its frontend/ at /), as users load it; the library then
signals through that gateway to homelab_server in another namespace. The tests assert on
outcomes and console lines, never on timings.
"""

import base64
import json
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab import token
from lab.chromium import BrowserError, Chromium
from lab.netns import Namespace
from tests.e2e.conftest import GATEWAY_IP, LanLab, NatSetup
from tests.support.natlab import INET_IP, TURN_PASSWORD, TURN_USER
from tests.support.webapp import BIG, web_app

pytestmark = pytest.mark.slow

GUIDE_MESSAGE = "The target (homelab_server) is not currently connected"
POSTED = random.Random(3).randbytes(300 * 1024)

# Helpers defined once on the page: bodies travel back to Python as base64.
HELPERS = """
window.toBase64 = async (response) => {
  const bytes = new Uint8Array(await response.arrayBuffer());
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
};
window.fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
"""


async def open_page(namespace: Namespace, workdir: Path, page_url: str) -> Chromium:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (make system-deps installs it)")
    browser = await Chromium(namespace, workdir).start()
    await browser.goto(page_url)
    await browser.evaluate(HELPERS)
    return browser


@pytest.fixture
async def lan_browser(lan: LanLab) -> AsyncIterator[Chromium]:
    # Chromium gathers host candidates only when its namespace has a default route.
    lan.client.run("ip", "route", "add", "default", "via", GATEWAY_IP)
    browser = await open_page(lan.client, lan.workdir, f"http://{GATEWAY_IP}:8765/")
    yield browser
    await browser.stop()


def connect_expression(url: str, ice_servers: list[dict[str, str]] | None = None) -> str:
    options = {"url": url, "token": token("client", "browser"), "iceServers": ice_servers or []}
    return f"""(async () => {{
      const {{ connect }} = await import('/wss-webrtc.js');
      window.bridge = await connect({json.dumps(options)});
      return bridge.state;
    }})()"""


async def test_the_page_fetches_posts_and_echoes_through_the_bridge(
    lan: LanLab, lan_browser: Chromium
) -> None:
    async with web_app(lan.homelab, 8080):
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        state = await lan_browser.evaluate(connect_expression(lan.signaling_url))
        assert state["connection"] == "connected"
        assert state["pairType"] == "host"

        big = await lan_browser.evaluate(
            "(async () => { const r = await bridge.fetch('web', '/big');"
            " return [r.status, r.headers.get('content-type'), await toBase64(r)]; })()"
        )
        assert big[:2] == [200, "application/octet-stream"]
        assert base64.b64decode(big[2]) == BIG

        posted = await lan_browser.evaluate(
            f"""(async () => {{
              const r = await bridge.fetch('web', '/echo', {{
                method: 'POST', body: fromBase64('{base64.b64encode(POSTED).decode()}'),
                headers: {{ 'content-type': 'application/octet-stream' }} }});
              return [r.status, r.headers.get('x-method'), await toBase64(r)];
            }})()"""
        )
        assert posted[:2] == [200, "POST"]
        assert base64.b64decode(posted[2]) == POSTED

        missing = await lan_browser.evaluate(
            "(async () => { const r = await bridge.fetch('web', '/missing');"
            " return [r.status, r.statusText, r.ok]; })()"
        )
        assert missing == [404, "Not Found", False]

        echoed = await lan_browser.evaluate(
            """(async () => {
              const channel = await bridge.openChannel('echo');
              const back = new Promise((resolve) => { channel.onmessage = (e) => resolve(e.data); });
              channel.send('hello through WebRTC');
              return [await back, (await bridge.ping()) > 0];
            })()"""
        )
        assert echoed == ["hello through WebRTC", True]
    console = "\n".join(lan_browser.console)
    assert "log: [WSSWebRTC] WebSocket connected" in console
    assert "log: [WSSWebRTC] Generated WebRTC signal: offer" in console


async def test_without_a_homelab_connect_rejects_with_the_guides_message(
    lan: LanLab, lan_browser: Chromium
) -> None:
    refused = await lan_browser.evaluate(
        f"""(async () => {{
          const {{ connect }} = await import('/wss-webrtc.js');
          try {{ await connect({json.dumps({"url": lan.signaling_url, "token": token("client", "b")})}); }}
          catch (error) {{ return [error instanceof Error, error.code, error.message, error.target]; }}
          return 'connected';
        }})()"""
    )
    assert refused == [True, "backend_unreachable", GUIDE_MESSAGE, "laptop"]
    console = "\n".join(lan_browser.console)
    assert "log: [WSSWebRTC] WebSocket connected" in console
    assert "log: [WSSWebRTC] Generated WebRTC signal: offer" in console
    assert f"error: [WSSWebRTC] Signaling error backend_unreachable: {GUIDE_MESSAGE}" in console


async def test_a_bad_token_and_a_wrong_url_reject_naming_the_websocket_step(
    lan: LanLab, lan_browser: Chromium
) -> None:
    for url, bad_token in [(lan.signaling_url, "hp1.forged.token"), ("ws://10.77.0.1:9/prod", "x")]:
        refused = await lan_browser.evaluate(
            f"""(async () => {{
              const {{ connect }} = await import('/wss-webrtc.js');
              try {{ await connect({json.dumps({"url": url, "token": bad_token})}); }}
              catch (error) {{ return [error.code, error.step, error.message]; }}
            }})()"""
        )
        assert refused[:2] == ["websocket_failed", "websocket"]
        assert refused[2].startswith(f"WebSocket connection failed: {url}")


async def test_across_symmetric_nat_the_page_connects_through_turn(nat_lab: NatSetup) -> None:
    nat_lab.nat.mode("nat1", "symmetric")
    stun = f"stun:{INET_IP}:3478"
    turn = {
        "urls": f"turn:{INET_IP}:3478?transport=udp",
        "username": TURN_USER,
        "credential": TURN_PASSWORD,
    }
    async with web_app(nat_lab.homelab, 8080):
        await nat_lab.start_daemon(
            {"web": "http://127.0.0.1:8080"}, ice_servers=[{"urls": stun}, turn]
        )
        browser = await open_page(nat_lab.client, nat_lab.workdir, f"http://{INET_IP}:8765/")
        try:
            state = await browser.evaluate(
                connect_expression(nat_lab.signaling_url, [{"urls": stun}, turn])
            )
            assert (state["connection"], state["pairType"]) == ("connected", "relay")
            status = await browser.evaluate(
                "(async () => (await bridge.fetch('web', '/big')).status)()"
            )
            assert status == 200
        except BrowserError:
            print("\n".join(browser.console))
            raise
        finally:
            await browser.stop()


async def test_the_demo_page_connects_and_shows_the_homelabs_web_page(
    lan: LanLab, lan_browser: Chromium
) -> None:
    async with web_app(lan.homelab, 8080):
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        fragment = f"token={token('client', 'page')}"
        await lan_browser.goto(f"http://{GATEWAY_IP}:8765/index.html#{fragment}")
        shown = await lan_browser.evaluate(
            """(async () => {
              const $ = (id) => document.getElementById(id);
              const until = async (check) => { while (!check()) await new Promise((r) => setTimeout(r, 50)); };
              const prefilled = $('url').value;
              $('connect').click();
              await until(() => $('state-connection').textContent !== 'new' || $('error').textContent);
              await until(() => $('state-rtt').textContent.endsWith(' ms') || $('error').textContent);
              const states = ['websocket', 'ice', 'connection', 'pair'].map((s) => $('state-' + s).textContent);
              $('load').click();
              await until(() => $('view').srcdoc || $('fetch-status').textContent.includes(':'));
              return [prefilled, $('error').textContent, states, $('fetch-status').textContent, $('view').srcdoc];
            })()"""
        )
    prefilled, error, states, status, page = shown
    assert prefilled == f"ws://{GATEWAY_IP}:8765/prod"  # the page's own gateway
    assert error == ""
    assert states == ["closed", "connected", "connected", "host"]  # signaling closes once connected
    assert status.startswith("200 OK")
    assert "Hello from the homelab" in page


async def test_a_lost_peer_connection_is_negotiated_again_on_the_next_call(
    lan: LanLab, lan_browser: Chromium
) -> None:
    async with web_app(lan.homelab, 8080):
        daemon = await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        await lan_browser.evaluate(connect_expression(lan.signaling_url))
        # The daemon dies (its peers with it) and comes back; the page's connection is stale.
        daemon.stop()
        await lan.start_daemon({"web": "http://127.0.0.1:8080"}, name="daemon-again")
        status = await lan_browser.evaluate(
            "(async () => (await bridge.fetch('web', '/')).status)()"
        )
    assert status == 200
    negotiations = [
        line for line in lan_browser.console if "Generated WebRTC signal: offer" in line
    ]
    assert len(negotiations) == 2
