"""playbooks/diagnose.yml's signaling side on AWS: the function's CloudWatch lines, read
from moto, matched against the troubleshooting guide's patterns."""

import json
import time
from pathlib import Path

import pytest

from tests.support.ansible import ANSIBLE_PLAYBOOK, run_local_play
from tests.support.aws import FUNCTION, AwsDeployment, sealed_environment
from tests.support.moto_server import MotoServer

pytestmark = pytest.mark.slow

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: diagnose, tasks_from: signaling.yml}
    - ansible.builtin.debug: {var: diagnose_signaling_findings}
"""
STALE = "[INFO] LAPTOP_ID connection is stale (homelab_server not connected)"


def test_the_functions_log_lines_give_the_guides_rows(aws: MotoServer, tmp_path: Path) -> None:
    logs = AwsDeployment(aws, tmp_path).client("logs")
    group = f"/aws/lambda/{FUNCTION}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    lines = [
        "[INFO] ===== Lambda Handler Started =====",
        STALE,
        "Traceback (most recent call last):",
    ]
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
    )
    python = f"ansible_python_interpreter={ANSIBLE_PLAYBOOK.with_name('python')}"
    environment = {**sealed_environment(), "ANSIBLE_STDOUT_CALLBACK": "json"}
    result = run_local_play(
        tmp_path,
        PLAY,
        "signaling_backend=aws",
        f"signaling_aws_endpoint_url={aws.url}",
        python,
        environment=environment,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = json.loads(result.stdout)["plays"][0]["tasks"]
    findings = tasks[-1]["hosts"]["localhost"]["diagnose_signaling_findings"]
    by_row = {finding["row"]: finding for finding in findings}
    assert by_row["target_not_connected"]["finding"] == STALE
    assert by_row["target_not_connected"]["error"] == (
        "The target (homelab_server) is not currently connected"
    )
    assert by_row["bug"]["finding"] == "Traceback (most recent call last):"
