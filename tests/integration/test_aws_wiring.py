"""Both registry back ends, wired as deployed: the handler runs with the deployed function's
own environment and finds its registry where the playbook put it.

moto cannot run the function (it has no Docker here), so the handler runs in a process of
its own (a Lambda container's stand-in) with exactly the environment the function was
deployed with, plus endpoint overrides that send its AWS calls to moto. API Gateway's part
is played here: each connection first goes through the function as the $connect route's
authorizer, and what its Allow says goes with every later event of that connection.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from p2p_protocol.tokens import issue_token
from signaling_lambda import authorizer
from tests.support.aws import FUNCTION, NAME, REGION, AwsDeployment, sealed_environment
from tests.support.moto_server import MotoServer
from tests.unit.aws_support import authorizer_event, event

pytestmark = pytest.mark.slow

HOME, BROWSER = "HOME-conn=", "BROWSER-conn="
RUN_HANDLER = """
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, format="[%(levelname)s] %(message)s", stream=sys.stdout)
for name in ("botocore", "urllib3", "boto3"):
    logging.getLogger(name).setLevel(logging.WARNING)
from signaling_lambda.handler import lambda_handler
for line in sys.stdin:
    print("RESULT", json.dumps(lambda_handler(json.loads(line), None)))
"""


@pytest.fixture
def deployment(aws: MotoServer, tmp_path: Path) -> AwsDeployment:
    return AwsDeployment(aws, tmp_path / "credentials")


def run_in_function(
    deployment: AwsDeployment, events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """The handler, in a process whose environment is the deployed function's: its answer to
    each event, and its log."""
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
    lines = result.stdout.splitlines()
    answers = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
    assert len(answers) == len(events), result.stdout + result.stderr
    return answers, result.stdout


def connect(deployment: AwsDeployment, tokens: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Opens each connection (id: token) as API Gateway does; what each one's later events
    carry in ``requestContext.authorizer``."""
    events = [authorizer_event(connection, token) for connection, token in tokens.items()]
    answers, _ = run_in_function(deployment, events)
    contexts = {}
    for connection, answer in zip(tokens, answers, strict=True):
        context = authorizer.allowed_context(answer)
        assert context is not None, f"the deployed function refused {connection}: {answer}"
        contexts[connection] = context
    return contexts


def opened(route: str, connection: str, body: Any, context: dict[str, Any]) -> dict[str, Any]:
    request = event(route, connection, body)
    request["requestContext"]["authorizer"] = context
    return request


def register_then_relay(deployment: AwsDeployment) -> str:
    secret = deployment.secret().encode()
    token = issue_token(secret, "homelab", "laptop", 3600)
    client = issue_token(secret, "client", "browser", 3600, homelabs=("laptop",))
    contexts = connect(deployment, {HOME: token, BROWSER: client})
    register = {"action": "register", "name": "laptop", "token": token}
    signal = {"action": "sendSignal", "to": "laptop", "data": "hi"}
    answers, log = run_in_function(
        deployment,
        [
            opened("$connect", HOME, None, contexts[HOME]),
            opened("register", HOME, register, contexts[HOME]),
            opened("$connect", BROWSER, None, contexts[BROWSER]),
            opened("sendSignal", BROWSER, signal, contexts[BROWSER]),
        ],
    )
    assert [answer["statusCode"] for answer in answers] == [200] * 4, log
    assert log.count("Connection allowed") == 2, log
    assert "Refused a message" not in log, log
    return log


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
    deployment.deploy(signaling_registry_backend="lambda_env").assert_ok().assert_unchanged()
    assert laptop_id() == HOME
