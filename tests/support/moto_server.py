"""``moto_server`` on 127.0.0.1, the stand-in for AWS (which cannot run here).

Run as a module it is moto's own server with two compatibility patches: moto 5.2 leaves
``TableId`` out of DescribeTable/CreateTable answers, and community.aws.dynamodb_table then
fails with ``KeyError: 'table_id'`` after creating the table. The patch fills the field in
the way AWS does (a stable UUID per table). And moto 5.2 keeps API Gateway v2 authorizers
but cannot list them (GetAuthorizers), which homelab_p2p_websocket_api does to find its
own; the patch lists them the way GetRoutes lists routes. Nothing else about moto changes.

    python -m tests.support.moto_server -H 127.0.0.1 -p 0
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "tests.support.moto_server"]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _patch_table_id() -> None:
    from moto.dynamodb.models.table import Table

    original = Table.describe

    def describe(self: Any, base_key: str = "TableDescription") -> dict[str, Any]:
        result: dict[str, Any] = original(self, base_key=base_key)
        result[base_key].setdefault("TableId", str(uuid.uuid5(uuid.NAMESPACE_URL, self.table_arn)))
        return result

    Table.describe = describe  # type: ignore[method-assign]


def _patch_get_authorizers() -> None:
    from moto.apigatewayv2.responses import ApiGatewayV2Response

    def get_authorizers(self: Any) -> tuple[int, dict[str, str], str]:
        api = self.apigatewayv2_backend.get_api(self.path.split("/")[-2])
        return 200, {}, json.dumps({"items": [a.to_json() for a in api.authorizers.values()]})

    ApiGatewayV2Response.get_authorizers = get_authorizers  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """A moto_server process of the test's own, on a free loopback port."""

    def __init__(self, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> "MotoServer":
        environment = {**os.environ, **self.extra_env}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [*SERVER, "-H", "127.0.0.1", "-p", str(self.port)],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.reset()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(
                        f"moto_server did not start:\n{self.log_path.read_text()}"
                    ) from None
                time.sleep(0.1)
        return self

    def _post(self, path: str, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(f"{self.url}{path}", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def reset(self) -> None:
        """Forget every resource; Lambda then never needs Docker (invoke echoes its input)."""
        self._post("/moto-api/reset")
        self._post("/moto-api/config", {"lambda": {"use_docker": False}})

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


if __name__ == "__main__":
    _patch_table_id()
    _patch_get_authorizers()
    from moto.server import main

    main(sys.argv[1:])
