"""Both registry back ends, wired as deployed: the handler runs with the deployed function's
own environment and finds its registry where the playbook put it.

moto cannot run the function (it has no Docker here), so the handler runs in a process of
its own (a Lambda container's stand-in) with exactly the environment the function was
deployed with, plus endpoint overrides that send its AWS calls to moto.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from p2p_protocol.tokens import issue_token
from tests.support.aws import FUNCTION, NAME, REGION, AwsDeployment, sealed_environment
from tests.support.moto_server import MotoServer
from tests.unit.aws_support import event

pytestmark = pytest.mark.slow

HOME, BROWSER = "HOME-conn=", "BROWSER-conn="
RUN_HANDLER = """
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, format="[%(levelname)s] %(message)s", stream=sys.stdout)
for name in ("botocore", "urllib3", "boto3"):
    logging.getLogger(name).setLevel(logging.WARNING)
from signaling_lambda.handler import lambda_handler
for line in sys.stdin:
    print("RESULT", json.dumps(lambda_handler(json.loads(line), None)["statusCode"]))
"""


@pytest.fixture
def deployment(aws: MotoServer, tmp_path: Path) -> AwsDeployment:
    return AwsDeployment(aws, tmp_path / "credentials")


def run_in_function(deployment: AwsDeployment, events: list[dict[str, Any]]) -> str:
    """The handler, in a process whose environment is the deployed function's."""
    config = deployment.client("lambda").get_function_configuration(FunctionName=FUNCTION)
    environment = {
        **sealed_environment(),
        **config["Environment"]["Variables"],
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": deployment.moto.url,
        "APIGW_MANAGEMENT_ENDPOINT": deployment.moto.url,
    }
    result = subprocess.run(
        [sys.executable, "-c", RUN_HANDLER],
        input="".join(json.dumps(e) + "\n" for e in events),
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("RESULT 200") == len(events), result.stdout + result.stderr
    return result.stdout


def register_then_relay(deployment: AwsDeployment) -> str:
    token = issue_token(deployment.secret().encode(), "homelab", "laptop", 3600)
    return run_in_function(
        deployment,
        [
            event("register", HOME, {"action": "register", "name": "laptop", "token": token}),
            event("sendSignal", BROWSER, {"action": "sendSignal", "to": "laptop", "data": "hi"}),
        ],
    )


def test_dynamodb_registry_is_the_deployed_table(deployment: AwsDeployment) -> None:
    deployment.deploy().assert_ok()
    log = register_then_relay(deployment)
    assert f"LAPTOP_ID registry item is set: {HOME}" in log
    assert "LAPTOP_ID connection verified as alive" in log
    item = deployment.client("dynamodb").get_item(
        TableName=f"{NAME}-registry", Key={"name": {"S": "laptop"}}
    )["Item"]
    assert item["connectionId"] == {"S": HOME}


def test_lambda_env_registry_is_the_functions_own_environment_and_survives_a_deploy(
    deployment: AwsDeployment,
) -> None:
    deployment.deploy(signaling_registry_backend="lambda_env").assert_ok()
    assert deployment.client("dynamodb").list_tables()["TableNames"] == []
    policy = deployment.client("iam").get_role_policy(RoleName=FUNCTION, PolicyName=FUNCTION)
    [registry] = [s for s in policy["PolicyDocument"]["Statement"] if "lambda" in str(s["Action"])]
    assert registry["Resource"] == f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}"
    assert sorted(registry["Action"]) == [
        "lambda:GetFunctionConfiguration",
        "lambda:UpdateFunctionConfiguration",
    ]

    log = register_then_relay(deployment)
    assert f"LAPTOP_ID environment variable is set: {HOME}" in log
    assert "LAPTOP_ID connection verified as alive" in log

    def laptop_id() -> str | None:
        config = deployment.client("lambda").get_function_configuration(FunctionName=FUNCTION)
        value: str | None = config["Environment"]["Variables"].get("LAPTOP_ID")
        return value

    assert laptop_id() == HOME
    # A deploy after the homelab registered must not unregister it.
    assert deployment.deploy(signaling_registry_backend="lambda_env").assert_ok().changed == 0
    assert laptop_id() == HOME
