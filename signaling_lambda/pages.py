"""The browser pages over HTTPS on AWS: the proxy console and the app origin.

Two HTTP APIs invoke this function with payload 2.0 events (docs/aws.md, "Browser pages"):
one is the console's origin (``proxy.html``, the demo page and their scripts), the other the
app origin (``frontend/apps/``: the proxy's service worker, relay and bootstrap page). The
event's ``requestContext.domainName`` says which one was asked. The files come with the zip,
under ``frontend/``; nothing here touches signaling, so pages answer even when the signaling
configuration is broken.

| variable              | meaning                                                      |
|-----------------------|--------------------------------------------------------------|
| PAGES_CONSOLE_ORIGIN  | ``https://host`` of the console's HTTP API                   |
| PAGES_APPS_ORIGIN     | ``https://host`` of the app origin's HTTP API                |
| PAGES_SIGNALING_URL   | ``wss://host/stage``, the console's default signaling URL    |

The host is what the request's ``requestContext.domainName`` holds (AWS: no port).

The local gateway serves the same files with the same policies (signaling_gateway/).
"""

import base64
import json
import logging
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("signaling_lambda")

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"
"""``frontend/`` beside this package: in the checkout, and in the zip alike."""

APP_ORIGIN_FILES = frozenset(
    f"/bridge-{name}" for name in ("sw.js", "relay.js", "relay.html", "boot.js", "shim.js")
)
"""The proxy's files on the app origin; any other path is the bootstrap page (index.html)."""
APP_ORIGIN_POLICY = "default-src 'self'; object-src 'none'; base-uri 'none'"
RELAY_PAGE = "/bridge-relay.html"

# AWS gives https:// and wss://; the lab's stand-in for API Gateway serves plain http.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")
_SIGNALING_URL = re.compile(r"wss?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?/[A-Za-z0-9_-]{1,128}")
_CONSOLE_FILE = re.compile(r"/[A-Za-z0-9_-]{1,64}\.(html|js|css)")
Response = dict[str, Any]


def relay_policy(console_origin: str) -> str:
    """The relay page's policy: only the console may frame it (it hands the worker a port)."""
    return f"{APP_ORIGIN_POLICY}; frame-ancestors {console_origin}"


class PagesConfigError(ValueError):
    """A PAGES_* variable is unusable; str() names it and the fix."""


@dataclass(frozen=True)
class PagesSettings:
    console_origin: str
    apps_origin: str
    signaling_url: str

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> "PagesSettings | None":
        """None when the deployment serves no pages (signaling_aws_proxy_pages: false)."""
        values = {
            name: env.get(name, "").strip()
            for name in ("PAGES_CONSOLE_ORIGIN", "PAGES_APPS_ORIGIN", "PAGES_SIGNALING_URL")
        }
        if not any(values.values()):
            return None
        for name in ("PAGES_CONSOLE_ORIGIN", "PAGES_APPS_ORIGIN"):
            if not _ORIGIN.fullmatch(values[name]):
                raise PagesConfigError(
                    f"{name} is {values[name][:100]!r}, not an https://host origin; "
                    "deploy again with ansible-playbook site.yml"
                )
        if not _SIGNALING_URL.fullmatch(values["PAGES_SIGNALING_URL"]):
            raise PagesConfigError(
                f"PAGES_SIGNALING_URL is {values['PAGES_SIGNALING_URL'][:100]!r}, not a "
                "wss://host/stage URL; deploy again with ansible-playbook site.yml"
            )
        return cls(
            values["PAGES_CONSOLE_ORIGIN"],
            values["PAGES_APPS_ORIGIN"],
            values["PAGES_SIGNALING_URL"],
        )


def is_http_request(event: object) -> bool:
    """A payload 2.0 HTTP event (an HTTP API's); WebSocket events carry no ``http`` part."""
    if not isinstance(event, dict) or event.get("version") != "2.0":
        return False
    context = event.get("requestContext")
    return isinstance(context, dict) and isinstance(context.get("http"), dict)


def respond(event: dict[str, Any], env: Mapping[str, str], root: Path = FRONTEND_DIR) -> Response:
    """The answer to one HTTP request; never raises."""
    try:
        settings = PagesSettings.from_environ(env)
    except PagesConfigError as exc:
        log.error("Configuration error: %s", exc)
        return _text(500, "Internal Server Error: the pages' configuration is broken.")
    if settings is None:
        return _text(404, "This deployment serves no pages (signaling_aws_proxy_pages is false).")
    context = event["requestContext"]
    method = str(context["http"].get("method", ""))
    if method not in ("GET", "HEAD"):
        return _text(405, "Only GET and HEAD are served here.", [("Allow", "GET, HEAD")])
    path = str(event.get("rawPath") or "/")
    host = str(context.get("domainName", ""))
    if host == _host(settings.apps_origin):
        return _app_origin_file(root / "apps", path, settings, head=method == "HEAD")
    if host == _host(settings.console_origin):
        if path == "/proxy-config.json":
            config = {"appsOrigin": settings.apps_origin, "signalingUrl": settings.signaling_url}
            return _body(200, json.dumps(config).encode(), "application/json")
        return _console_file(root, path, head=method == "HEAD")
    log.warning("Refused a page request for host %r: not this deployment's pages", host[:100])
    return _text(404, "Not Found: this function serves its pages on its own two addresses.")


def _host(origin: str) -> str:
    return urlsplit(origin).netloc


def _console_file(root: Path, path: str, *, head: bool) -> Response:
    """A file of ``frontend/`` itself, by its plain name (no folders, no dots but the suffix)."""
    path = "/index.html" if path == "/" else path
    if not _CONSOLE_FILE.fullmatch(path):
        return _text(404, "Not Found")
    return _file(root / path[1:], [], head=head)


def _app_origin_file(root: Path, path: str, settings: PagesSettings, *, head: bool) -> Response:
    policy = relay_policy(settings.console_origin) if path == RELAY_PAGE else APP_ORIGIN_POLICY
    served = path if path in APP_ORIGIN_FILES else "/index.html"
    return _file(root / served[1:], [("Content-Security-Policy", policy)], head=head)


def _file(file: Path, headers: list[tuple[str, str]], *, head: bool) -> Response:
    try:
        body = file.read_bytes()
    except OSError:
        return _text(404, "Not Found")
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type == "application/javascript":
        content_type += "; charset=utf-8"
    response = _body(200, body, content_type, headers)
    if head:
        response["body"] = ""
    return response


def _text(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return _body(status, f"{text}\n".encode(), "text/plain; charset=utf-8", headers or [])


def _body(
    status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": content_type,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            **dict(headers or []),
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
