"""The browser proxy's app origin: a second port of the gateway that serves frontend/apps/."""

import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.support.integration import StartGateway


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def http_get(url: str, host: str | None = None) -> Answer:
    """The answer to a GET of ``url``, with another Host header if given."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    target = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
    connection.request("GET", target, headers={"Host": host} if host else {})
    response = connection.getresponse()
    return Answer(response.status, response.headers, response.read())


def console_base(url: str) -> str:
    return url.replace("ws://", "http://").removesuffix("/prod")


def test_the_console_names_the_app_origin_on_the_host_the_browser_used(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway()
    base = console_base(gateway.url)
    config = http_get(f"{base}/proxy-config.json")
    assert config.status == 200
    apps = urlsplit(json.loads(config.body)["appsOrigin"])
    assert (apps.scheme, apps.hostname) == ("http", "127.0.0.1")
    assert apps.port not in (None, urlsplit(gateway.url).port)
    # The connect form's default: this gateway's own WebSocket URL.
    assert json.loads(config.body)["signalingUrl"] == gateway.url
    # A browser that reached the gateway by another name gets the app origin on that name.
    named = http_get(f"{base}/proxy-config.json", host=f"homelab.example:{urlsplit(base).port}")
    # A Host header that is no host name gets no origin built from it.
    assert http_get(f"{base}/proxy-config.json", host="x; script-src *").status == 400
    assert json.loads(named.body)["appsOrigin"] == f"http://homelab.example:{apps.port}"
    port = urlsplit(gateway.url).port
    assert json.loads(named.body)["signalingUrl"] == f"ws://homelab.example:{port}/prod"


def test_the_app_origin_serves_the_proxy_files_and_the_bootstrap_page_only(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway()
    base = console_base(gateway.url)
    console_port = urlsplit(base).port
    apps = json.loads(http_get(f"{base}/proxy-config.json").body)["appsOrigin"]
    worker = http_get(f"{apps}/bridge-sw.js")
    assert (worker.status, worker.headers["Content-Type"]) == (
        200,
        "text/javascript; charset=utf-8",
    )
    relay = http_get(f"{apps}/bridge-relay.html")
    assert relay.status == 200
    # Only the console may frame the relay: it hands the worker its ports.
    policy = relay.headers["Content-Security-Policy"]
    assert policy.endswith(f"frame-ancestors http://127.0.0.1:{console_port}")
    # An app's path before the worker runs, or anything else: the bootstrap page, never
    # the console (proxy.html, which holds the credential, lives on the console origin only).
    for path in ("/app/web/", "/proxy.html", "/wss-webrtc.js", "/../index.html"):
        page = http_get(f"{apps}{path}")
        assert (page.status, page.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert b'<script src="/bridge-boot.js"></script>' in page.body


def test_minus_one_serves_no_app_origin(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--apps-port", "-1")
    assert http_get(f"{console_base(gateway.url)}/proxy-config.json").status == 404
    assert "app origin" not in gateway.log()
