"""Running the signaling_aws role's own AWS modules directly against moto_server.

A module runs as Ansible runs it (a JSON file of arguments, JSON on stdout), with the role's
module_utils importable as ``ansible.module_utils.*`` the way Ansible ships them with it, and
through a small proxy that records every request, so "no write call" is something a test can
see.
"""

import http.client
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import boto3

from tests.support.moto_server import MotoServer

ENVIRONMENT = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
REGION = "us-east-1"

# `python MODULE ARGS`, except that the module's role's module_utils directory is part of the
# ansible.module_utils package, as it is in the zip Ansible builds around a module it runs.
BOOTSTRAP = """\
import os, runpy, sys
import ansible.module_utils
utils, module, arguments = sys.argv[1:]
ansible.module_utils.__path__.append(utils)
sys.path[0] = os.path.dirname(module)
sys.argv = [module, arguments]
runpy.run_path(module, run_name="__main__")
"""

Answer = tuple[int, dict[str, str], bytes]


def invocation_uri(lambda_arn: str) -> str:
    """The URI by which API Gateway invokes the function, as the modules build it."""
    return f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{lambda_arn}/invocations"


def apigatewayv2(moto: MotoServer) -> Any:
    """A boto3 apigatewayv2 client straight to moto, to check what a module did."""
    return boto3.client(
        "apigatewayv2",
        endpoint_url=moto.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class RecordingProxy:
    """Forwards requests to moto and remembers them; answers those in ``canned`` itself."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.requests: list[tuple[str, str]] = []
        # (method, path) -> answer: AWS errors, and the calls moto does not implement.
        self.canned: dict[tuple[str, str], Answer] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_request(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path))
                if (self.command, self.path) in proxy.canned:
                    self.answer(*proxy.canned[self.command, self.path])
                    return
                connection = http.client.HTTPConnection(proxy.upstream, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request(self.command, self.path, body, headers)
                answer = connection.getresponse()
                content = answer.read()
                connection.close()
                passed = {k: v for k, v in answer.getheaders() if k.lower() == "content-type"}
                self.answer(answer.status, passed, content)

            def answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(content))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_request

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def writes(self) -> list[tuple[str, str]]:
        return [request for request in self.requests if request[0] in WRITE_METHODS]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> "RecordingProxy":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ModuleRunner:
    """Runs a module in a subprocess, the way ansible-test units runs one directly.

    Every run talks to moto through ``proxy`` (whose record starts afresh), with moto's
    credentials, the region and ``defaults`` as arguments unless ``args`` say otherwise.
    """

    def __init__(
        self, module: Path, tmp_path: Path, proxy: RecordingProxy, **defaults: Any
    ) -> None:
        self.module = module
        self.tmp_path = tmp_path
        self.proxy = proxy
        self.defaults = defaults

    def __call__(self, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
        arguments = {
            "endpoint_url": self.proxy.url,
            "region": REGION,
            "access_key": "testing",
            "secret_key": "testing",
            **self.defaults,
            **args,
            "_ansible_check_mode": check,
            "_ansible_diff": diff,
        }
        path = self.tmp_path / "args.json"
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments}))
        self.proxy.requests.clear()
        utils = self.module.parent.parent / "module_utils"
        result = subprocess.run(
            [sys.executable, "-c", BOOTSTRAP, str(utils), str(self.module), str(path)],
            capture_output=True,
            text=True,
            env=ENVIRONMENT,
            timeout=60,
            check=False,
        )
        assert result.stdout, result.stderr
        output: dict[str, Any] = json.loads(result.stdout)
        return output


def succeeded(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("failed"), result.get("msg")
    return result


def only_api(apigw: Any) -> dict[str, Any]:
    """The one API there is."""
    apis = apigw.get_apis()["Items"]
    assert len(apis) == 1, apis
    api: dict[str, Any] = apis[0]
    return api


def routes_of(apigw: Any, api_id: str) -> dict[str, dict[str, Any]]:
    return {route["RouteKey"]: route for route in apigw.get_routes(ApiId=api_id)["Items"]}


def integrations_of(apigw: Any, api_id: str) -> list[dict[str, Any]]:
    integrations: list[dict[str, Any]] = apigw.get_integrations(ApiId=api_id)["Items"]
    return integrations
