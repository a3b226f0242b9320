"""The browser proxy (frontend/proxy.html) in Debian's Chromium: whole web apps through WebRTC.

The console is served by the gateway on its WebSocket port and the apps on its app origin
(port + 2), as users open them; Chromium runs in a namespace of its own and is driven by
clicks and typing in the app's frame. Screenshots are kept under ``artifacts/``.
"""

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from lab import default_client_file
from lab.apigateway_http import pages_apis
from lab.bridge import BridgeHosts
from lab.chromium import Chromium
from lab.netns import Namespace, venv_bin
from lab.waiting import eventually
from tests.e2e.conftest import GATEWAY_IP, LanLab, NatSetup
from tests.support.natlab import INET_IP, TURN_PASSWORD, TURN_USER
from tests.support.proxyapp import DOWNLOAD, ProxyApp, idle_event_stream, proxy_app
from tests.support.sshd import sshd_config

pytestmark = pytest.mark.slow

APPS = f"http://{GATEWAY_IP}:8767"
ARTIFACTS = Path(os.environ.get("HOMELAB_P2P_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))


async def until(browser: Chromium, frame: str | None, expression: str, what: str) -> Any:
    """The value of ``expression`` in ``frame`` (a URL prefix; None: the console) once it is
    truthy."""

    async def check() -> Any:
        if frame is None:
            return await browser.evaluate(expression)
        return await browser.evaluate_in_frame(frame, expression)

    def console_lines() -> str:
        return "; the browser's console:\n" + "\n".join(browser.console[-40:])

    return await eventually(check, what, context=console_lines)


async def open_console(
    lab: BridgeHosts, host: str, ice_servers: list[dict[str, str]] | None = None
) -> Chromium:
    """Chromium in the lab's client, on the proxy console that the gateway at ``host`` serves."""
    console_origin, apps_origin = f"http://{host}:8765", f"http://{host}:8767"
    browser = Chromium(lab.client, lab.workdir, secure_origins=[console_origin, apps_origin])
    await browser.start()
    fragment = f"url={lab.signaling_url}&target=laptop&ice={json.dumps(ice_servers or [])}"
    await browser.goto(f"{console_origin}/proxy.html#{quote(fragment, safe='=&:/')}")
    return browser


@pytest.fixture
async def console(lan: LanLab) -> AsyncIterator[Chromium]:
    """The proxy console in the LAN lab (the test starts the homelab)."""
    lan.client.run("ip", "route", "add", "default", "via", GATEWAY_IP)
    browser = await open_console(lan, GATEWAY_IP)
    yield browser
    await browser.stop()


async def connect_console(browser: Chromium, expected: str = "direct") -> None:
    await browser.choose_files("#credential-file", [default_client_file()])
    await until(browser, None, "document.getElementById('credential').value.length > 0", "load")
    await browser.evaluate("document.getElementById('connect').click()")
    state = await until(
        browser,
        None,
        "['direct', 'relayed'].includes(document.getElementById('link-state').textContent)"
        " && !document.getElementById('open').disabled"
        " && document.getElementById('link-state').textContent",
        "the console connecting",
    )
    assert state == expected


async def open_app(browser: Chromium, label: str, path: str = "/", apps: str = APPS) -> str:
    """Open ``label`` from the console's form; the frame's URL prefix."""
    await browser.evaluate(
        f"""document.getElementById('service').value = {json.dumps(label)};
        document.getElementById('path').value = {json.dumps(path)};
        document.getElementById('open').click()"""
    )
    return f"{apps}/app/{label}/"


async def screenshot(browser: Chromium, name: str) -> None:
    await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
    await browser.screenshot(ARTIFACTS / f"{name}.png")


async def test_an_app_renders_signs_in_with_a_cookie_and_follows_its_redirects(
    lan: LanLab, console: Chromium
) -> None:
    async with proxy_app(lan.homelab, 8080, "Dashboard") as app:
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        await connect_console(console)
        frame = await open_app(console, "web")
        rendered = await until(
            console,
            frame,
            """document.body?.dataset.whoami && [
              document.querySelector('h1').textContent,
              document.getElementById('script').textContent,
              getComputedStyle(document.body).backgroundColor,
              document.getElementById('dot').naturalWidth,
              document.body.dataset.whoami,
              location.pathname]""",
            "the app's page rendering",
        )
        assert rendered == [
            "Dashboard",
            "the script ran",  # /static/app.js: an absolute URL
            "rgb(230, 240, 255)",  # static/app.css: a relative one
            7,  # /static/dot.svg
            "nobody",  # fetch('/api/whoami') without a cookie yet
            "/app/web/",
        ]
        await screenshot(console, "proxy-app-home")

        # The app's scripts cannot reach the console: another origin, and the console's
        # credential lives in the console's storage only.
        reached = await console.evaluate_in_frame(
            frame,
            """(() => {
              const attempt = (read) => {
                try { read(); return 'read'; } catch (e) { return e.name; }
              };
              return [attempt(() => parent.document.title),
                      attempt(() => parent.sessionStorage.length),
                      sessionStorage.getItem('homelab-p2p credential')];
            })()""",
        )
        assert reached == ["SecurityError", "SecurityError", None]
        # The console runs its own scripts only (its content security policy).
        blocked = await console.evaluate(
            """(async () => {
              window.injected = 0;
              const refused = new Promise((resolve) => document.addEventListener(
                'securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true }));
              const script = document.createElement('script');
              script.textContent = 'window.injected = 1';
              document.body.append(script);
              return [await refused, window.injected];
            })()"""
        )
        assert blocked == ["script-src-elem", 0]

        # A link to an absolute path, then a form posted to one, answered by a 303 to "/".
        await console.evaluate_in_frame(frame, "document.getElementById('login-link').click()")
        await until(console, f"{frame}login", "!!document.getElementById('name')", "login page")
        await console.evaluate_in_frame(
            f"{frame}login",
            """document.getElementById('name').value = 'alice';
            document.getElementById('submit').click()""",
        )
        signed_in = await until(
            console,
            frame,
            "document.body?.dataset.whoami === 'alice' &&"
            " [document.getElementById('user').textContent, location.pathname]",
            "the signed-in page",
        )
        assert signed_in == ["signed in as alice", "/app/web/"]
        # The app's root without its slash is the same page, with the slash.
        await console.evaluate_in_frame(frame, "location.assign('/app/web?from=typed')")
        assert (
            await until(
                console,
                f"{frame}?from=typed",
                "document.body?.dataset.whoami && location.pathname + location.search",
                "the app's root without its slash",
            )
            == "/app/web/?from=typed"
        )
        assert app.received == ["login alice"]
        await screenshot(console, "proxy-app-signed-in")

        # Uploads and downloads from the app's own scripts, byte-exact; errors passed through.
        results = await console.evaluate_in_frame(
            frame,
            """(async () => {
              const upload = new Uint8Array(5 * 1024 * 1024);
              for (let i = 0; i < upload.length; i += 1) upload[i] = (i * 7919) % 251;
              const posted = await (await fetch('upload', { method: 'POST', body: upload })).json();
              const digest = async (bytes) =>
                [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
                  .map((b) => b.toString(16).padStart(2, '0')).join('');
              const whole = await fetch('/download');
              const wholeBytes = await whole.arrayBuffer();
              const part = await fetch('/download', { headers: { Range: 'bytes=100-199' } });
              const partBytes = new Uint8Array(await part.arrayBuffer());
              const missing = await fetch('/missing');
              const boom = await fetch('/boom');
              return {
                posted, uploadDigest: await digest(upload),
                whole: [whole.status, wholeBytes.byteLength, await digest(wholeBytes)],
                part: [part.status, part.headers.get('content-range'),
                       [...partBytes.slice(0, 4)], partBytes.length],
                missing: missing.status, boom: [boom.status, await boom.text()],
              };
            })()""",
        )
    assert results["posted"] == {"length": 5 * 1024 * 1024, "sha256": results["uploadDigest"]}
    assert results["whole"] == [200, len(DOWNLOAD), hashlib.sha256(DOWNLOAD).hexdigest()]
    assert results["part"] == [206, f"bytes 100-199/{len(DOWNLOAD)}", list(DOWNLOAD[100:104]), 100]
    assert results["missing"] == 404
    assert results["boom"] == [500, "boom: the app failed"]


async def sign_in(browser: Chromium, frame: str, name: str) -> None:
    """Type ``name`` into the app's login form and send it, as a person does."""
    await browser.evaluate_in_frame(frame, "location.assign('/login')")
    await until(browser, f"{frame}login", "!!document.getElementById('name')", "the login page")
    await browser.evaluate_in_frame(
        f"{frame}login",
        f"""document.getElementById('name').value = {json.dumps(name)};
        document.getElementById('submit').click()""",
    )
    await until(
        browser, frame, f"document.body?.dataset.whoami === {json.dumps(name)}", f"{name} signed in"
    )


async def test_the_pages_signaling_aws_serves_open_an_app(lan: LanLab) -> None:
    """The console and the app origin as the signaling function serves them on AWS
    (signaling_lambda/pages.py behind a stand-in for its two HTTP APIs), signaling elsewhere:
    the link names no signaling URL, and the form starts with the one the pages name."""
    lan.client.run("ip", "route", "add", "default", "via", GATEWAY_IP)
    async with (
        pages_apis(lan.gateway_host, GATEWAY_IP, (8443, 8444), lan.signaling_url) as origins,
        proxy_app(lan.homelab, 8080, "Dashboard"),
    ):
        console_origin, apps_origin = origins
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        browser = Chromium(lan.client, lan.workdir, secure_origins=list(origins))
        await browser.start()
        try:
            await browser.goto(f"{console_origin}/proxy.html")
            await until(
                browser,
                None,
                f"document.getElementById('url').value === {json.dumps(lan.signaling_url)}",
                "the signaling URL from /proxy-config.json",
            )
            await connect_console(browser)
            frame = await open_app(browser, "web", apps=apps_origin)
            title = await until(
                browser,
                frame,
                "document.body?.dataset.whoami && document.querySelector('h1').textContent",
                "the app's page rendering",
            )
            assert title == "Dashboard"
            await screenshot(browser, "proxy-aws-pages")
        finally:
            await browser.stop()


async def test_two_apps_at_once_keep_their_cookies_apart(lan: LanLab, console: Chromium) -> None:
    async with (
        proxy_app(lan.homelab, 8080, "Photos") as photos,
        proxy_app(lan.homelab, 8081, "Notes") as notes,
    ):
        await lan.start_daemon(
            {"photos": "http://127.0.0.1:8080", "notes": "http://127.0.0.1:8081"}
        )
        await connect_console(console)
        photos_frame = await open_app(console, "photos")
        await until(console, photos_frame, "document.body?.dataset.whoami", "photos loading")
        await sign_in(console, photos_frame, "alice")
        notes_frame = await open_app(console, "notes")
        await until(console, notes_frame, "document.body?.dataset.whoami", "notes loading")
        assert await console.evaluate_in_frame(notes_frame, "document.body.dataset.whoami") == (
            "nobody"  # photos' cookie did not travel to notes
        )
        await sign_in(console, notes_frame, "bob")
        whoami = "(async () => (await (await fetch('/api/whoami')).json()).user)()"
        assert await console.evaluate_in_frame(photos_frame, whoami) == "alice"
        assert await console.evaluate_in_frame(notes_frame, whoami) == "bob"
        # The app origin's own cookie store holds none of them (the console keeps the jars).
        assert await console.evaluate_in_frame(notes_frame, "document.cookie") == ""
        assert (photos.received, notes.received) == (["login alice"], ["login bob"])
        await screenshot(console, "proxy-two-apps")


async def received(app: ProxyApp, what: str) -> None:
    """Return once the app has received ``what``."""

    async def check() -> bool:
        return what in app.received

    await eventually(check, f"the app receiving {what!r} (it got {app.received})")


async def test_an_apps_websocket_and_event_stream_ride_the_bridge(
    lan: LanLab, console: Chromium
) -> None:
    async with proxy_app(lan.homelab, 8080, "Live") as app:
        await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        await connect_console(console)
        frame = await open_app(console, "web")
        await until(console, frame, "document.body?.dataset.whoami", "the app loading")
        results = await console.evaluate_in_frame(
            frame,
            """(async () => {
              const socket = new WebSocket(`ws://${location.host}/ws`);  // the app's /ws
              socket.binaryType = 'arraybuffer';
              await new Promise((resolve, reject) => {
                socket.onopen = resolve;
                socket.onerror = reject;
              });
              const next = () => new Promise((resolve) => {
                socket.onmessage = (e) => resolve(e.data);
              });
              socket.send('hello over the bridge');
              const text = await next();
              const bytes = new Uint8Array(100000).map((_, i) => (i * 31) % 256);
              socket.send(bytes);
              const back = new Uint8Array(await next());
              const closed = new Promise((resolve) => {
                socket.onclose = (e) => resolve([e.code, e.wasClean]);
              });
              socket.close(1000, 'done');
              const ticks = await new Promise((resolve, reject) => {
                const source = new EventSource('events');
                const seen = [];
                source.onerror = () => reject(new Error('the event stream failed'));
                source.onmessage = (e) => {
                  seen.push(JSON.parse(e.data).tick);
                  if (seen.length === 3) { source.close(); resolve(seen); }
                };
              });
              return {
                text, binary: back.length === bytes.length && back.every((b, i) => b === bytes[i]),
                closed: await closed, ticks,
                shimmed: !WebSocket.toString().includes('[native code]'),
              };
            })()""",
        )
        # The closed event stream freed the app's connection: its next write failed.
        await received(app, "events ended")
    assert results == {
        "text": "hello over the bridge",
        "binary": True,
        "closed": [1000, True],
        "ticks": [0, 1, 2],
        "shimmed": True,
    }
    assert app.received == [
        "ws text hello over the bridge",
        "ws binary 100000",
        "events ended",
    ]


def link_state(state: str) -> str:
    return f"document.getElementById('link-state').textContent === {json.dumps(state)}"


async def test_a_dropped_connection_shows_and_recovers_with_the_app_signed_in(
    lan: LanLab, console: Chromium
) -> None:
    async with proxy_app(lan.homelab, 8080, "Dashboard") as app:
        daemon = await lan.start_daemon({"web": "http://127.0.0.1:8080"})
        await connect_console(console)
        frame = await open_app(console, "web")
        await until(console, frame, "document.body?.dataset.whoami", "the app loading")
        await sign_in(console, frame, "alice")
        # The homelab's bridge restarts: every peer connection it had is gone.
        daemon.stop()
        await until(console, None, link_state("reconnecting"), "the console showing the loss")
        await screenshot(console, "proxy-reconnecting")
        await lan.start_daemon({"web": "http://127.0.0.1:8080"}, name="daemon-again")
        await until(console, None, link_state("direct"), "the console reconnecting")
        await console.evaluate_in_frame(frame, "location.reload()")
        after = await until(
            console,
            frame,
            "document.body?.dataset.whoami === 'alice'"
            " && document.getElementById('user').textContent",
            "the app after the reconnection",
        )
    assert after == "signed in as alice"  # the console kept the app's cookie across it
    assert app.received == ["login alice"]
    lost = "[proxy] The homelab stopped answering; reconnecting"
    assert any(lost in line for line in console.console)


async def test_across_symmetric_nat_apps_open_relayed_through_turn(nat_lab: NatSetup) -> None:
    nat_lab.nat.mode("nat1", "symmetric")
    stun = {"urls": f"stun:{INET_IP}:3478"}
    turn = {
        "urls": f"turn:{INET_IP}:3478?transport=udp",
        "username": TURN_USER,
        "credential": TURN_PASSWORD,
    }
    async with proxy_app(nat_lab.homelab, 8080, "Behind NAT"):
        await nat_lab.start_daemon({"web": "http://127.0.0.1:8080"}, ice_servers=[stun, turn])
        browser = await open_console(nat_lab, INET_IP, [stun, turn])
        try:
            await connect_console(browser, expected="relayed")
            frame = await open_app(browser, "web", apps=f"http://{INET_IP}:8767")
            rendered = await until(
                browser,
                frame,
                "document.body?.dataset.whoami && [document.querySelector('h1').textContent,"
                " document.getElementById('script').textContent]",
                "the app rendering through TURN",
            )
            assert rendered == ["Behind NAT", "the script ran"]
            await screenshot(browser, "proxy-relayed")
        finally:
            await browser.stop()


async def test_the_cookie_jar_scopes_expires_and_bounds_an_apps_cookies(console: Chromium) -> None:
    results = await console.evaluate(
        """(async () => {
          const { CookieJar } = await import('/cookie-jar.js');
          const jar = new CookieJar();
          const now = 1_000_000;
          jar.store('session=abc; Path=/; HttpOnly; SameSite=Lax', '/login', now);
          jar.store('pref=dark', '/settings/theme', now);            // default path: /settings
          jar.store('short=1; Max-Age=10', '/', now);
          jar.store('gone=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT', '/', now);
          const early = [jar.header('/', now), jar.header('/settings/x?y=1', now),
                         jar.header('/settingsX', now)];
          const later = jar.header('/', now + 11_000);                 // short expired
          jar.store('session=; Max-Age=0', '/', now);                  // how a server deletes
          const deleted = jar.header('/', now);
          const refused = [jar.store('x'.repeat(5000) + '=1', '/', now),
                           jar.store('novalue', '/', now)];
          for (let i = 0; i < 200; i += 1) jar.store(`c${i}=${i}`, '/', now);
          const kept = jar.header('/', now).split('; ');
          return { early, later, deleted, refused, kept: [kept.length, kept[0], kept.at(-1)] };
        })()"""
    )
    assert results == {
        "early": [
            "session=abc; short=1",
            "pref=dark; session=abc; short=1",  # the longer path first
            "session=abc; short=1",  # /settingsX is not under /settings
        ],
        "later": "session=abc",
        "deleted": "",
        "refused": [False, False],
        "kept": [180, "c20=20", "c199=199"],  # the oldest go first, past 180
    }


async def listening(namespace: Namespace, port: int) -> None:
    """Return once something accepts connections on 127.0.0.1:``port`` in ``namespace``."""

    async def check() -> bool:
        sock = await asyncio.to_thread(namespace.socket_connected, "127.0.0.1", port, 1)
        sock.close()
        return True

    await eventually(check, f"a server listening on port {port}")


async def written(path: Path) -> str:
    """The text of ``path`` once a process in the lab has written it."""

    async def check() -> str:
        exists = await asyncio.to_thread(path.exists)
        return await asyncio.to_thread(path.read_text) if exists else ""

    return await eventually(check, f"something writing {path}")


async def test_webssh_from_pypi_logs_in_and_runs_what_is_typed(
    lan: LanLab, console: Chromium
) -> None:
    """WebSSH (pip install webssh): static assets, a form with an XSRF cookie posted by XHR,
    then a terminal on a WebSocket; started in the homelab as its README says."""
    keys = lan.workdir / "ssh"
    lan.homelab.popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(sshd_config(keys))], stderr=subprocess.DEVNULL
    )
    webssh_log = (lan.workdir / "webssh.log").open("wb")
    lan.homelab.popen(
        [
            venv_bin("wssh"),
            "--address=127.0.0.1",
            "--port=8888",
            "--policy=autoadd",  # the lab's sshd has a new host key every run
            f"--hostfile={lan.workdir / 'known_hosts'}",  # not in the venv, its default
            f"--syshostfile={lan.workdir / 'system_known_hosts'}",
        ],
        stdout=webssh_log,
        stderr=subprocess.STDOUT,
    )
    await listening(lan.homelab, 8888)
    await lan.start_daemon({"webssh": "http://127.0.0.1:8888"})
    await connect_console(console)
    frame = await open_app(console, "webssh")
    # The form shows once the app's scripts are ready for it (a person sees it then).
    await until(
        console,
        frame,
        "typeof window.wssh?.connect === 'function'"
        " && getComputedStyle(document.querySelector('.form-container')).display !== 'none'",
        "the login form showing",
    )
    await console.evaluate_in_frame(
        frame,
        """document.getElementById('hostname').value = '127.0.0.1';
        document.getElementById('port').value = '2200';
        document.getElementById('username').value = 'root';""",
    )
    await console.choose_files("#privatekey", [keys / "client_key"], frame)
    await console.evaluate_in_frame(
        frame, "document.querySelector('#connect button[type=submit]').click()"
    )
    title = await until(
        console,
        frame,
        "!!document.querySelector('.xterm-helper-textarea') && document.title",
        "the terminal opening",
    )
    assert title == "root@127.0.0.1:2200"
    marker = lan.workdir / "typed-in-webssh"
    # Click into the terminal, as a person does before typing.
    frame_box = await console.evaluate(
        "(({ x, y }) => [x, y])(document.querySelector('iframe[name=\"app-webssh\"]')"
        ".getBoundingClientRect())"
    )
    terminal_box = await console.evaluate_in_frame(
        frame,
        "(({ x, y, width, height }) => [x + width / 2, y + height / 2])"
        "(document.getElementById('terminal').getBoundingClientRect())",
    )
    await console.click(frame_box[0] + terminal_box[0], frame_box[1] + terminal_box[1])
    await console.type_text(f"echo typed through WebRTC > {marker}\n")
    assert await written(marker) == "typed through WebRTC\n"
    await screenshot(console, "proxy-webssh")


async def test_a_closed_event_stream_frees_the_services_connection(
    lan: LanLab, console: Chromium
) -> None:
    async with (
        proxy_app(lan.homelab, 8080, "Live"),
        idle_event_stream(lan.homelab, 8082) as seen,
    ):
        await lan.start_daemon({"web": "http://127.0.0.1:8080", "feed": "http://127.0.0.1:8082"})
        await connect_console(console)
        frame = await open_app(console, "feed")
        await until(console, frame, "document.readyState === 'complete'", "the app's page")
        first = await console.evaluate_in_frame(
            frame,
            """new Promise((resolve, reject) => {
              const source = new EventSource('/stream');
              source.onerror = () => reject(new Error('the event stream failed'));
              source.onmessage = (e) => { source.close(); resolve(e.data); };
            })""",
        )
        assert first == "only"

        # The service sends nothing more: only the closed channel can end its connection.
        async def closed() -> bool:
            return "connection closed" in seen

        await eventually(closed, "the service's connection closing")
