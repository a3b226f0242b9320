"""Running the AWS playbooks against moto_server, and reading back what they made.

Every run gets an environment in which nothing can leave the machine: credentials are
moto's, no AWS config file is read, instance metadata is off, and a proxy on a closed
loopback port catches any request that forgot ``signaling_aws_endpoint_url`` (it then
fails here instead of reaching AWS).
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.support.ansible import ANSIBLE_PLAYBOOK, ROOT
from tests.support.moto_server import CREDENTIALS, MotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
NAME = "homelab-p2p"
FUNCTION = f"{NAME}-signaling"
ROUTES = {"$connect", "$disconnect", "$default", "sendSignal", "register", "ping"}
RECAP = re.compile(
    r"^localhost\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def sealed_environment(credentials: dict[str, str] | None = CREDENTIALS) -> dict[str, str]:
    return {
        "PATH": f"{ANSIBLE_PLAYBOOK.parent}:/usr/bin:/bin",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        **(credentials or {}),
    }


@dataclass
class Run:
    returncode: int
    output: str
    changed: int
    failed: int

    def assert_ok(self) -> "Run":
        assert self.returncode == 0, self.output
        assert self.failed == 0, self.output
        return self

    def assert_unchanged(self) -> "Run":
        """changed=0, or the tasks that changed something, with their results."""
        changed = re.findall(
            r"^TASK \[[^\n]*\n(?:(?!TASK \[).*\n)*?changed: .*$", self.output, re.M
        )
        assert self.changed == 0, "\n".join(changed) or self.output
        return self


@dataclass
class AwsDeployment:
    """The playbooks, pointed at one moto_server and one credentials directory."""

    moto: MotoServer
    credentials_dir: Path
    credentials: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.credentials is None:
            self.credentials = dict(CREDENTIALS)

    def playbook(self, playbook: str, *args: str, **extra_vars: str) -> Run:
        variables = {
            "signaling_aws_endpoint_url": self.moto.url,
            "signaling_aws_credentials_dir": str(self.credentials_dir),
            **extra_vars,
        }
        argv = [str(ANSIBLE_PLAYBOOK), "-i", "inventory/example", playbook, *args]
        for key, value in variables.items():
            argv += ["-e", f"{key}={value}"]
        result = subprocess.run(
            argv,
            cwd=ROOT,
            env=sealed_environment(self.credentials),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        output = result.stdout + result.stderr
        recap = RECAP.search(output)
        assert recap, f"no play recap:\n{output}"
        assert "Traceback" not in output, output
        return Run(result.returncode, output, int(recap.group(2)), int(recap.group(4)))

    def deploy(self, *args: str, **extra_vars: str) -> Run:
        return self.playbook("site.yml", "--limit", "signaling", *args, **extra_vars)

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.moto.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def secret(self) -> str:
        return (self.credentials_dir / "signaling-secret").read_text().strip()


def create_registry_table(dynamodb: Any, table: str) -> None:
    """The registry's table as the signaling_aws role creates it: ``name`` as the key,
    ``expiresAt`` as the TTL attribute."""
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
    )
