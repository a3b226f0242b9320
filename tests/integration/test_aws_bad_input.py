"""Bad input to the AWS deployment: one sentence that says what to fix, and nothing created.

Plus the update's smoke test, whose three outcomes (echo, unreachable, refused) need a
WebSocket endpoint: moto serves none, so a local gateway with the deployed secret stands in.
"""

import json
from pathlib import Path

import boto3
import pytest

from tests.support.aws import REGION, AwsDeployment
from tests.support.integration import StartGateway
from tests.support.moto_server import MotoServer

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(aws: MotoServer, tmp_path: Path) -> AwsDeployment:
    return AwsDeployment(aws, tmp_path / "credentials")


@pytest.mark.parametrize(
    ("credentials", "extra_vars", "message"),
    [
        pytest.param(
            {},
            {},
            "No AWS credentials were found while trying to ask AWS who deploys: export "
            "AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            id="no credentials",
        ),
        pytest.param(
            None,
            {"signaling_aws_region": "us-esat-1"},
            'signaling_aws_region is "us-esat-1", which is not an AWS region with API Gateway '
            "WebSocket APIs (did you mean us-east-1?)",
            id="misspelled region",
        ),
        pytest.param(
            None,
            {"signaling_aws_regoin": "eu-west-1"},
            "signaling_aws_regoin is not a variable of the signaling_aws role; "
            "did you mean signaling_aws_region?",
            id="misspelled variable",
        ),
        pytest.param(
            None,
            {"signaling_aws_endpoint_url": "http://127.0.0.1:9"},
            "AWS could not be reached at http://127.0.0.1:9/ while trying to ask AWS who "
            "deploys: check the network, signaling_aws_region (us-east-1) and "
            "signaling_aws_endpoint_url.",
            id="unreachable endpoint",
        ),
    ],
)
def test_bad_input_stops_the_play_with_one_sentence_and_creates_nothing(
    deployment: AwsDeployment,
    credentials: dict[str, str] | None,
    extra_vars: dict[str, str],
    message: str,
) -> None:
    if credentials is not None:
        deployment.credentials = credentials
    run = deployment.deploy(**extra_vars)
    assert run.returncode != 0
    assert message in " ".join(run.output.split())
    assert run.changed == 0
    assert deployment.client("lambda").list_functions()["Functions"] == []
    assert deployment.client("iam").list_roles()["Roles"] == []


def test_a_denied_permission_names_the_action_and_the_identity(tmp_path: Path) -> None:
    # moto enforces IAM policies after its first N requests; those create the deployer.
    moto = MotoServer(tmp_path / "moto.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "3"}).start()
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=moto.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="deployer")
        everything_but_roles = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "iam:CreateRole", "Resource": "*"},
            ],
        }
        iam.put_user_policy(
            UserName="deployer",
            PolicyName="no-roles",
            PolicyDocument=json.dumps(everything_but_roles),
        )
        key = iam.create_access_key(UserName="deployer")["AccessKey"]
        deployer = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        run = AwsDeployment(moto, tmp_path / "credentials", deployer).deploy()
    finally:
        moto.stop()
    assert run.returncode != 0
    assert (
        "AWS denied iam:CreateRole to arn:aws:iam::123456789012:user/deployer while trying to "
        "create the function's IAM role: grant that identity the permissions listed in "
        "docs/aws.md."
    ) in " ".join(run.output.split())


def test_the_smoke_test_echoes_through_a_reachable_endpoint_and_skips_an_unreachable_one(
    deployment: AwsDeployment, start_gateway: StartGateway, tmp_path: Path
) -> None:
    deployment.deploy().assert_ok()
    secret_file = deployment.credentials_dir / "signaling-secret"
    # The last --secret-file wins: the gateway signs with the secret the deploy generated.
    gateway = start_gateway("--secret-file", str(secret_file))

    echoed = deployment.playbook("playbooks/update-lambda.yml", signaling_aws_smoke_url=gateway.url)
    assert f"Echo from {gateway.url}: connected in" in echoed.assert_ok().output

    closed = "ws://127.0.0.1:9/prod"
    skipped = deployment.playbook("playbooks/update-lambda.yml", signaling_aws_smoke_url=closed)
    assert (
        f"Smoke test skipped: homelab-p2p: WebSocket connection failed: cannot reach {closed}"
        in (" ".join(skipped.assert_ok().output.split()))
    )

    other_secret = tmp_path / "other-secret"
    other_secret.write_text("x" * 40)
    stranger = start_gateway("--secret-file", str(other_secret))
    refused = deployment.playbook(
        "playbooks/update-lambda.yml", signaling_aws_smoke_url=stranger.url
    )
    assert refused.returncode != 0
    assert (
        f"The smoke test of {stranger.url} failed after the update: the signaling service "
        "refused the token (HTTP 401)"
    ) in " ".join(refused.output.split())
