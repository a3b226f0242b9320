"""``signaling-gateway`` run as users run it: the console script in a process of its own."""

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import boto3
from botocore.config import Config

from p2p_runtime.identity import write_private

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

GATEWAY = Path(sys.executable).with_name("signaling-gateway")
MANAGEMENT_SECRET = "lab-management-secret-0123456789abcdef-0123456789"
"""What ``write_management_secret`` writes, for a gateway a test must call the API of."""
SERVING = re.compile(r"Serving (ws://\S+)")
MANAGEMENT = re.compile(r"management API on (http://\S+),")


class GatewayProcess:
    def __init__(self, args: list[str], log_path: Path, prefix: list[str] | None = None) -> None:
        """``prefix`` runs it elsewhere, such as ``["ip", "netns", "exec", NAME]``."""
        self.args = args
        self.prefix = prefix or []
        self.log_path = log_path
        self.url = ""
        self.management_url = ""
        self.stdout_lines: queue.Queue[str] = queue.Queue()
        self._process: subprocess.Popen[str] | None = None

    @property
    def process(self) -> subprocess.Popen[str]:
        assert self._process is not None, "not started"
        return self._process

    def start(self, timeout: float = 30) -> "GatewayProcess":
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [*self.prefix, str(GATEWAY), *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self._process.stdout is not None
        threading.Thread(
            target=self._read_stdout, args=(self._process.stdout,), daemon=True
        ).start()
        try:
            first_line = self.stdout_lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(
                f"gateway printed no URL within {timeout} s:\n{self.log()}"
            ) from None
        match = SERVING.search(first_line)
        assert match, f"unexpected first line {first_line!r}:\n{self.log()}"
        self.url = match.group(1)
        management = self.wait_for_log(MANAGEMENT)
        self.management_url = management.group(1)
        return self

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            self.stdout_lines.put(line)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        """The first match of ``pattern`` in the log, waiting for it to be written."""
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = compiled.search(self.log())
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{compiled.pattern!r} not in the gateway log:\n{self.log()}")
            time.sleep(0.02)

    def log_lines_since(self, mark: int) -> list[str]:
        return self.log()[mark:].splitlines()

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        if self._process is None or self._process.poll() is not None:
            return self._process.returncode if self._process else 0
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"gateway ignored SIGTERM for {timeout} s:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def write_management_secret(path: Path) -> Path:
    """A ``--management-secret-file`` holding MANAGEMENT_SECRET, readable by its owner only."""
    write_private(path, MANAGEMENT_SECRET + "\n")
    return path


def management_client(url: str, secret: str = MANAGEMENT_SECRET) -> "ApiGatewayManagementApiClient":
    """The management API as the handler calls it: boto3, signed with ``secret``, no retry."""
    return boto3.session.Session(
        aws_access_key_id="lab", aws_secret_access_key=secret, region_name="us-east-1"
    ).client(
        "apigatewaymanagementapi", endpoint_url=url, config=Config(retries={"max_attempts": 1})
    )
