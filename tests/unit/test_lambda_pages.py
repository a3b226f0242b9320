"""The browser pages the signaling function serves on AWS (signaling_lambda/pages.py).

Events are payload 2.0 HTTP events as an HTTP API sends them to a Lambda proxy integration
(the shape AWS documents); they go through ``lambda_handler``, the function's entry point.
"""

import base64
import json
import logging
from typing import Any

import pytest

from signaling_lambda import handler as lambda_entry
from signaling_lambda.pages import APP_ORIGIN_POLICY, FRONTEND_DIR

CONSOLE_HOST = "c0ns01e.execute-api.eu-west-1.amazonaws.com"
APPS_HOST = "app5a9p.execute-api.eu-west-1.amazonaws.com"
SIGNALING_URL = "wss://s1gna1.execute-api.eu-west-1.amazonaws.com/prod"
PAGES_ENV = {
    "PAGES_CONSOLE_ORIGIN": f"https://{CONSOLE_HOST}",
    "PAGES_APPS_ORIGIN": f"https://{APPS_HOST}",
    "PAGES_SIGNALING_URL": SIGNALING_URL,
}
SIGNALING_ENV = ("REGISTRY_BACKEND", "SIGNALING_SECRET", "SIGNALING_AUTH", "REGISTRY_TABLE")


def http_event(host: str, path: str, method: str = "GET") -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": host, "user-agent": "Mozilla/5.0"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": host.split(".", maxsplit=1)[0],
            "domainName": host,
            "domainPrefix": host.split(".", maxsplit=1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "Mozilla/5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "30/Nov/2026:23:00:00 +0000",
            "timeEpoch": 1796079600000,
        },
        "isBase64Encoded": False,
    }


@pytest.fixture
def pages_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages' variables, and no signaling configuration at all: pages must not need it."""
    for name in SIGNALING_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in PAGES_ENV.items():
        monkeypatch.setenv(name, value)


def get(host: str, path: str, method: str = "GET") -> dict[str, Any]:
    return lambda_entry.lambda_handler(http_event(host, path, method), None)


def body(response: dict[str, Any]) -> bytes:
    assert response["isBase64Encoded"] is True
    return base64.b64decode(response["body"])


@pytest.mark.usefixtures("pages_env")
def test_the_console_host_serves_the_console_and_its_scripts() -> None:
    for path, file, content_type in [
        ("/proxy.html", "proxy.html", "text/html; charset=utf-8"),
        ("/proxy.js", "proxy.js", "text/javascript; charset=utf-8"),
        ("/wss-webrtc.js", "wss-webrtc.js", "text/javascript; charset=utf-8"),
        ("/", "index.html", "text/html; charset=utf-8"),
    ]:
        response = get(CONSOLE_HOST, path)
        assert response["statusCode"] == 200, path
        assert body(response) == (FRONTEND_DIR / file).read_bytes()
        assert response["headers"]["Content-Type"] in (
            content_type,
            content_type.replace("text/javascript", "application/javascript"),
        )
        assert response["headers"]["X-Content-Type-Options"] == "nosniff"


@pytest.mark.usefixtures("pages_env")
def test_the_console_names_the_app_origin_and_this_deployments_signaling_url() -> None:
    response = get(CONSOLE_HOST, "/proxy-config.json")
    assert response["statusCode"] == 200
    assert json.loads(body(response)) == {
        "appsOrigin": f"https://{APPS_HOST}",
        "signalingUrl": SIGNALING_URL,
    }


@pytest.mark.usefixtures("pages_env")
def test_the_apps_host_serves_the_proxy_files_and_the_bootstrap_page_only() -> None:
    apps = FRONTEND_DIR / "apps"
    worker = get(APPS_HOST, "/bridge-sw.js")
    assert body(worker) == (apps / "bridge-sw.js").read_bytes()
    assert worker["headers"]["Content-Security-Policy"] == APP_ORIGIN_POLICY
    relay = get(APPS_HOST, "/bridge-relay.html")
    # Only the console may frame the relay: it hands the service worker a port to the console.
    assert relay["headers"]["Content-Security-Policy"].endswith(
        f"; frame-ancestors https://{CONSOLE_HOST}"
    )
    for path in ("/app/web/", "/app/web/static/site.css", "/proxy.html", "/proxy-config.json"):
        response = get(APPS_HOST, path)
        assert body(response) == (apps / "index.html").read_bytes(), path
        assert response["headers"]["Content-Security-Policy"] == APP_ORIGIN_POLICY


@pytest.mark.usefixtures("pages_env")
def test_the_console_host_serves_no_folders_and_no_other_names() -> None:
    for path in (
        "/apps/bridge-sw.js",
        "/../signaling_lambda/settings.py",
        "/%2e%2e/p2p_protocol/tokens.py",
        "/signaling_lambda/handler.py",
        "/missing.html",
        "/proxy.html/",
    ):
        response = get(CONSOLE_HOST, path)
        assert response["statusCode"] == 404, path
        assert body(response) == b"Not Found\n"


@pytest.mark.usefixtures("pages_env")
def test_only_get_and_head_are_served() -> None:
    head = get(CONSOLE_HOST, "/proxy.html", "HEAD")
    assert (head["statusCode"], head["body"]) == (200, "")
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response = get(CONSOLE_HOST, "/proxy.html", method)
        assert response["statusCode"] == 405
        assert response["headers"]["Allow"] == "GET, HEAD"


@pytest.mark.usefixtures("pages_env")
def test_a_host_of_neither_api_gets_404_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="signaling_lambda"):
        response = get("evil.example", "/proxy.html")
    assert response["statusCode"] == 404
    assert "Refused a page request for host 'evil.example'" in caplog.text


def test_without_pages_http_requests_get_404(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PAGES_ENV:
        monkeypatch.delenv(name, raising=False)
    response = get(CONSOLE_HOST, "/proxy.html")
    assert response["statusCode"] == 404
    assert b"signaling_aws_proxy_pages" in body(response)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAGES_CONSOLE_ORIGIN", "ftp://c0ns01e.execute-api.eu-west-1.amazonaws.com"),
        ("PAGES_APPS_ORIGIN", "https://x.example/path; script-src *"),
        ("PAGES_SIGNALING_URL", "https://s1gna1.execute-api.eu-west-1.amazonaws.com/prod"),
    ],
)
def test_a_broken_pages_variable_is_one_error_line_and_a_500(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    for variable, good in PAGES_ENV.items():
        monkeypatch.setenv(variable, good)
    monkeypatch.setenv(name, value)
    with caplog.at_level(logging.ERROR, logger="signaling_lambda"):
        response = get(CONSOLE_HOST, "/proxy.html")
    assert response["statusCode"] == 500
    assert [r.getMessage() for r in caplog.records] == [
        f"Configuration error: {name} is {value!r}, not "
        + ("a wss://host/stage URL" if name == "PAGES_SIGNALING_URL" else "an https://host origin")
        + "; deploy again with ansible-playbook site.yml"
    ]


def test_websocket_events_never_reach_the_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A WebSocket $default event has no requestContext.http: it stays signaling's."""
    for name, value in PAGES_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REGISTRY_BACKEND", "memory")
    monkeypatch.setenv("SIGNALING_AUTH", "off")
    monkeypatch.setattr(lambda_entry, "_app", None)
    event = {
        "requestContext": {
            "routeKey": "$connect",
            "connectionId": "C=",
            "domainName": CONSOLE_HOST,
            "stage": "prod",
        }
    }
    assert lambda_entry.lambda_handler(event, None) == {"statusCode": 200}
