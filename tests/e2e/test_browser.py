"""frontend/wss-webrtc.js in Debian's Chromium, headless, in a network namespace of its own.

The page is served by the gateway (its frontend/ at /), as users load it; the library then
signals through that gateway to homelab_server in another namespace, with a credential of
the lab's operator. The tests assert on outcomes and console lines, never on timings.
"""

import asyncio
import base64
import dataclasses
import json
import random
import re
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab import OPERATOR, credential, credential_file, default_client_file, token
from lab.bridge import NamespaceTcpService
from lab.chromium import BrowserError, Chromium
from lab.netns import Namespace
from p2p_runtime.identity import load_credential
from tests.e2e.conftest import GATEWAY_IP, LanLab, NatSetup
from tests.e2e.test_client_bye import said_bye
from tests.support.natlab import INET_IP, TURN_PASSWORD, TURN_USER
from tests.support.webapp import BIG, HOME_PAGE, web_app

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
    # WebCrypto, which the library signs with, exists only in secure contexts.
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page_url))
    browser = await Chromium(namespace, workdir, secure_origins=[origin]).start()
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


def client_credential() -> str:
    """The lab's client credential file, as the page is given it (its text)."""
    return default_client_file().read_text()


def connect_expression(url: str, ice_servers: list[dict[str, str]] | None = None) -> str:
    options = {"url": url, "credential": client_credential(), "iceServers": ice_servers or []}
    return f"""(async () => {{
      const {{ connect }} = await import('/wss-webrtc.js');
      window.bridge = await connect({json.dumps(options)});
      return bridge.state;
    }})()"""


def refused_expression(options: dict[str, Any]) -> str:
    """connect() with ``options``, expected to reject: [code, message, step, bridge state]."""
    return f"""(async () => {{
      const {{ connect }} = await import('/wss-webrtc.js');
      try {{ await connect({json.dumps(options)}); }}
      catch (error) {{ return [error.code, error.message, error.step ?? null]; }}
      return 'connected';
    }})()"""


def daemon_identity(lab: LanLab, name: str = "daemon") -> tuple[str, str]:
    """The id and the expiry (ISO, as JavaScript writes it) of a lab daemon's certificate."""
    certificate = load_credential(lab.workdir / f"{name}.identity.json").certificate
    expiry = datetime.fromtimestamp(certificate.expires_at, UTC)
    return certificate.id, expiry.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_the_page_fetches_posts_and_echoes_through_the_bridge(
    lan: LanLab, lan_browser: Chromium
) -> None:
    async with web_app(lan.homelab, 8080):
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        state = await lan_browser.evaluate(connect_expression(lan.signaling_url))
        assert state["connection"] == "connected"
        assert state["pairType"] == "host"
        homelab = await lan_browser.evaluate(
            "[bridge.homelab.name, bridge.homelab.id, bridge.homelab.expiresAt.toISOString()]"
        )
        assert homelab == ["laptop", *daemon_identity(lan)]

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
    ident, expiry = homelab[1:]
    assert (
        f"log: [WSSWebRTC] Verified homelab 'laptop' (credential {ident}), certified until {expiry}"
        in console
    )


async def test_without_a_homelab_connect_rejects_with_the_guides_message(
    lan: LanLab, lan_browser: Chromium
) -> None:
    refused = await lan_browser.evaluate(
        f"""(async () => {{
          const {{ connect }} = await import('/wss-webrtc.js');
          try {{ await connect({json.dumps({"url": lan.signaling_url, "credential": client_credential()})}); }}
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
              try {{ await connect({json.dumps({"url": url, "token": bad_token, "credential": client_credential()})}); }}
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


async def test_a_credential_that_cannot_be_used_is_refused_before_signaling(
    lan: LanLab, lan_browser: Chromium
) -> None:
    good, other = json.loads(default_client_file().read_text()), credential("client", "other")
    old = credential("client", "old", ttl=60, now=time.time() - 3600)
    cases: dict[str, object] = {
        "a homelab's": credential("homelab", "laptop").to_json(),
        "expired": old.to_json(),
        "another's key": {**good, "key": json.loads(other.to_json())["key"]},
        "none": None,
    }
    refused = {
        case: await lan_browser.evaluate(
            refused_expression({"url": lan.signaling_url, "credential": given})
        )
        for case, given in cases.items()
    }
    expired_at = datetime.fromtimestamp(old.certificate.expires_at, UTC)
    assert refused == {
        "a homelab's": [
            "bad_credential",
            "the credential is a homelab's, not a client's: load the client's credential file",
            None,
        ],
        "expired": [
            "bad_credential",
            f"your credential (client 'old', credential {old.certificate.id}) expired at "
            f"{expired_at.strftime('%Y-%m-%dT%H:%M:%S.000Z')}; ask the operator for a new one",
            None,
        ],
        "another's key": [
            "bad_credential",
            "the credential is not usable: its key does not belong to its certificate",
            None,
        ],
        "none": [
            "bad_credential",
            "a credential is required: the JSON that `homelab-p2p credential issue --kind client` "
            "writes (certificate, key, operator)",
            None,
        ],
    }
    assert not any("WebSocket connected" in line for line in lan_browser.console)


async def test_the_demo_page_connects_and_shows_the_homelabs_web_page(
    lan: LanLab, lan_browser: Chromium
) -> None:
    held = client_credential()
    async with web_app(lan.homelab, 8080):
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        # A link of an older `make demo` carries a token: the page says it takes none.
        fragment = f"target=laptop&token={token('client', 'page')}"
        await lan_browser.goto(f"http://{GATEWAY_IP}:8765/index.html#{fragment}")
        await lan_browser.choose_files("#credential-file", [default_client_file()])
        shown = await lan_browser.evaluate(
            """(async () => {
              const $ = (id) => document.getElementById(id);
              const until = async (check) => { while (!check()) await new Promise((r) => setTimeout(r, 50)); };
              const prefilled = [$('url').value, $('token'), $('error').textContent];
              await until(() => $('credential-summary').textContent);
              const kept = [$('credential-summary').textContent, sessionStorage.getItem('homelab-p2p credential'),
                            $('credential-file').files.length];
              $('connect').click();
              await until(() => $('state-connection').textContent !== 'new' || $('error').textContent);
              await until(() => $('state-rtt').textContent.endsWith(' ms') || $('error').textContent);
              const states = ['websocket', 'ice', 'connection', 'pair', 'homelab'].map((s) => $('state-' + s).textContent);
              $('load').click();
              await until(() => $('view').srcdoc || $('fetch-status').textContent.includes(':'));
              return [prefilled, kept, $('error').textContent, states, $('fetch-status').textContent,
                      $('view').srcdoc, location.href];
            })()"""
        )
    prefilled, kept, error, states, status, page, href = shown
    assert prefilled == [
        f"ws://{GATEWAY_IP}:8765/prod",  # the page's own gateway
        None,  # no token field
        "This link carries a token, which this page no longer takes: load your credential file instead.",
    ]
    ident, expiry = daemon_identity(lan)
    e2e = load_credential(default_client_file()).certificate
    assert kept[0].startswith(f"client 'e2e' (credential {e2e.id}): homelabs laptop; every service")
    # The file's text, kept in this tab's sessionStorage only; the file input let go of it.
    assert kept[1:] == [held.strip(), 0]
    assert error == ""
    # Signaling closes once connected; the homelab's identity as its answer proved it.
    assert states == [
        "closed",
        "connected",
        "connected",
        "host",
        f"laptop (credential {ident}), certified until {expiry}",
    ]
    assert status.startswith("200 OK")
    assert "Hello from the homelab" in page
    assert href == f"http://{GATEWAY_IP}:8765/index.html#{fragment}"  # nothing went into it


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


async def test_a_credential_for_the_web_service_opens_no_other(
    lan: LanLab, lan_browser: Chromium
) -> None:
    web_only = credential("client", "webonly", services=("web",))
    async with web_app(lan.homelab, 8080):
        daemon = await lan.start_daemon(
            {"web": "http://127.0.0.1:8080", "files": "http://127.0.0.1:8080"}
        )
        options = {"url": lan.signaling_url, "credential": json.loads(web_only.to_json())}
        results = await lan_browser.evaluate(
            f"""(async () => {{
              const {{ connect }} = await import('/wss-webrtc.js');
              window.bridge = await connect({json.dumps(options)});
              const web = (await bridge.fetch('web', '/')).status;
              try {{ await bridge.fetch('files', '/'); }}
              catch (error) {{ return [web, error.code, error.message]; }}
              return [web, 'opened'];
            }})()"""
        )
        await daemon.logged(
            r"Refused data channel 'files' from \S+: the credential of client 'webonly' "
            rf"\(credential {web_only.certificate.id}\) does not list it"
        )
    assert results == [
        200,
        "forbidden",
        "your credential (webonly) does not allow service 'files'; it allows: web",
    ]


async def test_a_credential_for_another_homelab_is_refused_by_the_daemon(
    lan: LanLab, lan_browser: Chromium
) -> None:
    daemon = await lan.start_daemon({})
    for_nas = credential("client", "nasonly", homelabs=("nas",))
    # Signaling admits it (its token names laptop): the daemon is the one to refuse.
    options = {"url": lan.signaling_url, "credential": for_nas.to_json(), "token": token()}
    code, message, _ = await lan_browser.evaluate(refused_expression(options))
    why = (
        f"the credential of client 'nasonly' (credential {for_nas.certificate.id}) "
        "does not name homelab 'laptop' (it names nas)"
    )
    assert (code, message) == ("unauthorized", f"the offer was refused: {why}")
    await daemon.logged(rf"Refused the offer of \S+: {re.escape(why)}")


async def test_an_answer_certified_by_another_operator_is_refused_before_it_is_applied(
    lan: LanLab, lan_browser: Chromium
) -> None:
    # A homelab registered as 'laptop' whose certificate another operator signed (what a
    # compromised signaling service could put there). It answers this browser because the
    # client certificate is that operator's too; the browser trusts only the lab's operator.
    rogue = Ed25519PrivateKey.generate()
    identity = credential_file(credential("homelab", "laptop", operator=rogue))
    daemon = await lan.start_daemon({}, identity_file=str(identity), peer_connect_timeout=5)
    fooled = credential("client", "fooled", operator=rogue)
    trusting = dataclasses.replace(fooled, operator=OPERATOR.public_key())
    await lan_browser.evaluate(
        """(() => {
          // Counts what reaches the peer connection: a refused answer must never be applied.
          const apply = RTCPeerConnection.prototype.setRemoteDescription;
          window.applied = 0;
          RTCPeerConnection.prototype.setRemoteDescription = function (...args) {
            window.applied += 1;
            return apply.apply(this, args);
          };
        })()"""
    )
    options = {"url": lan.signaling_url, "credential": trusting.to_json()}
    code, message, step = await lan_browser.evaluate(refused_expression(options))
    assert (code, step) == ("identity", "identity")
    assert message.startswith(
        "the answer is not from homelab 'laptop': its certificate is not signed by your "
        "operator's key (another operator, or altered). Nothing was sent to it."
    )
    assert await lan_browser.evaluate("window.applied") == 0
    # The rogue daemon did answer, and its peer never connected: the browser's bye dropped
    # it at once (without the bye it would wait for its 5 s deadline and log that instead).
    peer = (await daemon.logged(r"Peer (\S+): offer received from client 'fooled'")).group(1)
    await daemon.logged(said_bye(peer))
    assert f"Peer {peer}: connected" not in daemon.log()
    console = "\n".join(lan_browser.console)
    assert "Verified homelab" not in console
    assert f"error: [WSSWebRTC] Connection to laptop failed: {message}" in console


async def test_a_hundred_requests_at_once_wait_their_turn_for_a_channel(
    lan: LanLab, lan_browser: Chromium
) -> None:
    """Past maxChannels (32) open at once, requests wait for a channel to close: the homelab
    would refuse a peer's 65th channel (max_channels_per_peer), closing ones included."""
    async with web_app(lan.homelab, 8080):
        daemon = await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        await lan_browser.evaluate(connect_expression(lan.signaling_url))
        statuses = await lan_browser.evaluate(
            """(async () => {
              const batch = () => Promise.all(Array.from({ length: 100 }, () =>
                bridge.fetch('web', '/').then(async (r) => [r.status, (await r.text()).length])));
              return [...await batch(), ...await batch()];
            })()"""
        )
    assert statuses == [[200, len(HOME_PAGE)]] * 200
    assert "max_channels_per_peer" not in daemon.log()


class GreetingService(NamespaceTcpService):
    """A tcp:// service that speaks first, as sshd does with its banner."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HELLO from the homelab\n")
        await writer.drain()
        await reader.read()
        writer.close()


async def test_a_service_that_speaks_first_is_heard_from_its_first_byte(
    lan: LanLab, lan_browser: Chromium
) -> None:
    """Chrome may deliver a channel's first message before its open event: openChannel hands
    it on to the caller's listener instead of losing it (20 channels in a row)."""
    async with GreetingService(lan.homelab, 2300):
        await lan.start_daemon({"greeter": "tcp://127.0.0.1:2300"})
        await lan_browser.evaluate(connect_expression(lan.signaling_url))
        greetings = await lan_browser.evaluate(
            """(async () => {
              const heard = [];
              for (let i = 0; i < 20; i += 1) {
                const channel = await bridge.openChannel('greeter');
                heard.push(await new Promise((resolve, reject) => {
                  const limit = setTimeout(() => reject(new Error('nothing heard')), 10000);
                  channel.onmessage = (e) => {
                    clearTimeout(limit);
                    resolve(new TextDecoder().decode(e.data));
                  };
                }));
                channel.close();
              }
              return heard;
            })()"""
        )
    assert greetings == ["HELLO from the homelab\n"] * 20
