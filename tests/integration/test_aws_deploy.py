"""``site.yml`` with ``signaling_backend=aws``, update-lambda.yml and teardown-aws.yml on moto.

The playbooks run as an operator runs them (``ansible-playbook -i inventory/example``),
pointed at a moto_server on loopback; boto3 then reads back every resource and setting.
"""

import base64
import json
import shutil
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from p2p_protocol.tokens import verify_token
from signaling_lambda import pages
from signaling_lambda.package import build_zip_bytes, code_sha256, handler_sources
from tests.support.aws import ACCOUNT, FUNCTION, NAME, REGION, ROUTES, AwsDeployment
from tests.support.moto_server import MotoServer

pytestmark = pytest.mark.slow

TABLE = f"{NAME}-registry"
API = f"{NAME}-signaling"
PAGES_APIS = (f"{NAME}-console", f"{NAME}-apps")
PAGES_VARIABLES = ("PAGES_CONSOLE_ORIGIN", "PAGES_APPS_ORIGIN", "PAGES_SIGNALING_URL")


@pytest.fixture
def deployment(aws: MotoServer, tmp_path: Path) -> AwsDeployment:
    return AwsDeployment(aws, tmp_path / "credentials")


def apis_by_name(deployment: AwsDeployment) -> dict[str, dict[str, Any]]:
    apis = deployment.client("apigatewayv2").get_apis()["Items"]
    by_name = {api["Name"]: dict(api) for api in apis}
    assert len(by_name) == len(apis), "two APIs of one name"
    return by_name


def only_api(deployment: AwsDeployment) -> dict[str, Any]:
    """The signaling API; besides it there are the pages' APIs only."""
    apis = apis_by_name(deployment)
    assert set(apis) == {API, *PAGES_APIS}
    return apis[API]


def statements(policy_document: Any) -> dict[str, dict[str, Any]]:
    document = json.loads(policy_document) if isinstance(policy_document, str) else policy_document
    return {statement["Sid"]: statement for statement in document["Statement"]}


def test_site_yml_deploys_converges_and_check_mode_stays_clean(
    deployment: AwsDeployment,
) -> None:
    preview = deployment.deploy("--check").assert_ok()
    assert preview.changed > 0
    assert "Signaling serves (nothing yet: check mode)" in preview.output
    assert deployment.client("lambda").list_functions()["Functions"] == []
    assert deployment.client("iam").list_roles()["Roles"] == []

    first = deployment.deploy().assert_ok()
    assert first.changed > 0
    deployment.deploy().assert_ok().assert_unchanged()
    deployment.deploy("--check").assert_ok().assert_unchanged()

    api = only_api(deployment)
    api_id = api["ApiId"]
    url = f"wss://{api_id}.execute-api.{REGION}.amazonaws.com/prod"
    assert f"Signaling serves {url}" in first.output
    gateway = deployment.client("apigatewayv2")
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    assert api["Tags"]["project"] == "homelab-p2p-bridge"

    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}"
    [integration] = gateway.get_integrations(ApiId=api_id)["Items"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["IntegrationUri"] == (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )
    routes = gateway.get_routes(ApiId=api_id)["Items"]
    assert {route["RouteKey"] for route in routes} == ROUTES
    assert {route["Target"] for route in routes} == {f"integrations/{integration['IntegrationId']}"}
    # The function is also the $connect route's authorizer: ?token= is checked before a
    # connection opens, and only $connect can have one.
    [authorizer] = gateway.get_authorizers(ApiId=api_id)["Items"]
    assert authorizer["Name"] == f"{API}-token"
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerUri"] == integration["IntegrationUri"]
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    guards = {r["RouteKey"]: (r.get("AuthorizationType"), r.get("AuthorizerId")) for r in routes}
    assert guards.pop("$connect") == ("CUSTOM", authorizer["AuthorizerId"])
    assert {guard for guard, _ in guards.values()} <= {None, "NONE"}
    [stage] = gateway.get_stages(ApiId=api_id)["Items"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("prod", True)

    lambda_ = deployment.client("lambda")
    config = lambda_.get_function_configuration(FunctionName=FUNCTION)
    assert config["Runtime"] == "python3.12"
    assert config["Handler"] == "signaling_lambda.handler.lambda_handler"
    assert (config["Timeout"], config["MemorySize"]) == (30, 256)
    assert config["CodeSha256"] == code_sha256(build_zip_bytes())
    pages = {name: api["ApiEndpoint"] for name, api in apis_by_name(deployment).items()}
    assert config["Environment"]["Variables"] == {
        "REGISTRY_BACKEND": "dynamodb",
        "REGISTRY_TABLE": TABLE,
        "REGISTRY_TTL_SECONDS": "7800",
        "SIGNALING_SECRET": deployment.secret(),
        "LOG_LEVEL": "DEBUG",
        "PAGES_CONSOLE_ORIGIN": pages[f"{NAME}-console"],
        "PAGES_APPS_ORIGIN": pages[f"{NAME}-apps"],
        "PAGES_SIGNALING_URL": url,
    }
    assert deployment.secret() not in first.output  # no_log held

    permissions = statements(lambda_.get_policy(FunctionName=FUNCTION)["Policy"])
    assert set(permissions) == {f"apigateway-{name}" for name in (API, *PAGES_APIS)}
    permission = permissions[f"apigateway-{API}"]
    assert permission["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert permission["Action"] == "lambda:InvokeFunction"
    source = permission["Condition"]["ArnLike"]["AWS:SourceArn"]
    assert source == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/*"
    # One permission lets API Gateway invoke the function for the routes and the authorizer
    # alike: in ArnLike, as here, * spans the slashes of the resource part.
    invoked_as = ["prod/$connect", f"authorizers/{authorizer['AuthorizerId']}"]
    for path in invoked_as:
        assert fnmatchcase(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{path}", source)

    iam = deployment.client("iam")
    role = iam.get_role(RoleName=FUNCTION)["Role"]
    assert config["Role"] == role["Arn"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert iam.list_role_policies(RoleName=FUNCTION)["PolicyNames"] == [FUNCTION]
    assert iam.list_attached_role_policies(RoleName=FUNCTION)["AttachedPolicies"] == []
    policy = statements(
        iam.get_role_policy(RoleName=FUNCTION, PolicyName=FUNCTION)["PolicyDocument"]
    )
    assert set(policy) == {"ManageConnectionsOfThisApi", "WriteItsOwnLogs", "RegistryTable"}
    assert policy["ManageConnectionsOfThisApi"]["Resource"] == (
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/prod/*/@connections/*"
    )
    assert policy["WriteItsOwnLogs"]["Resource"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{FUNCTION}:*"
    )
    assert policy["RegistryTable"]["Resource"] == (
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
    )
    assert sorted(policy["RegistryTable"]["Action"]) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    ]

    dynamodb = deployment.client("dynamodb")
    table = dynamodb.describe_table(TableName=TABLE)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "name", "KeyType": "HASH"}]
    ttl = dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiresAt")

    [group] = deployment.client("logs").describe_log_groups()["logGroups"]
    assert (group["logGroupName"], group["retentionInDays"]) == (f"/aws/lambda/{FUNCTION}", 30)

    client_token = (deployment.credentials_dir / "client.token").read_text().strip()
    assert verify_token(deployment.secret().encode(), client_token).role == "client"


def ask_page(environment: dict[str, str], origin: str, path: str) -> tuple[int, bytes]:
    """What the deployed function answers an HTTP API's request for path on origin (moto runs
    no function: the handler runs here, in the deployed function's environment)."""
    event = {
        "version": "2.0",
        "rawPath": path,
        "requestContext": {"domainName": urlsplit(origin).netloc, "http": {"method": "GET"}},
    }
    answer = pages.respond(event, environment)
    return answer["statusCode"], base64.b64decode(answer["body"])


def test_the_browser_pages_are_two_throttled_https_apis_and_can_be_turned_off(
    deployment: AwsDeployment,
) -> None:
    first = deployment.deploy().assert_ok()
    apis = apis_by_name(deployment)
    gateway = deployment.client("apigatewayv2")
    lambda_ = deployment.client("lambda")
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}"
    uri = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    permissions = statements(lambda_.get_policy(FunctionName=FUNCTION)["Policy"])
    for name in PAGES_APIS:
        api = apis[name]
        assert api["ProtocolType"] == "HTTP"
        assert api["ApiEndpoint"] == f"https://{api['ApiId']}.execute-api.{REGION}.amazonaws.com"
        assert api["Tags"]["project"] == "homelab-p2p-bridge"
        [integration] = gateway.get_integrations(ApiId=api["ApiId"])["Items"]
        assert (integration["IntegrationType"], integration["PayloadFormatVersion"]) == (
            "AWS_PROXY",
            "2.0",
        )
        assert integration["IntegrationUri"] == uri
        [route] = gateway.get_routes(ApiId=api["ApiId"])["Items"]
        assert (route["RouteKey"], route["Target"]) == (
            "$default",
            f"integrations/{integration['IntegrationId']}",
        )
        [stage] = gateway.get_stages(ApiId=api["ApiId"])["Items"]
        assert (stage["StageName"], stage["AutoDeploy"]) == ("$default", True)
        throttle = stage["DefaultRouteSettings"]
        assert (throttle["ThrottlingRateLimit"], throttle["ThrottlingBurstLimit"]) == (20, 40)
        source = permissions[f"apigateway-{name}"]["Condition"]["ArnLike"]["AWS:SourceArn"]
        assert source == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api['ApiId']}/*"
        assert fnmatchcase(f"{source[:-2]}/$default/GET/proxy.html", source)

    console = apis[f"{NAME}-console"]["ApiEndpoint"]
    signaling = f"wss://{apis[API]['ApiId']}.execute-api.{REGION}.amazonaws.com/prod"
    link = f"{console}/proxy.html#url={quote(signaling)}&target=laptop"
    assert f"open apps in a browser at {link}" in first.output
    # The deployed environment wires the console to its app origin and to signaling.
    environment = lambda_.get_function_configuration(FunctionName=FUNCTION)["Environment"]
    status, config = ask_page(environment["Variables"], console, "/proxy-config.json")
    assert status == 200
    assert json.loads(config) == {
        "appsOrigin": apis[f"{NAME}-apps"]["ApiEndpoint"],
        "signalingUrl": signaling,
    }

    off = deployment.deploy(signaling_aws_proxy_pages="false").assert_ok()
    assert off.changed > 0
    assert "open apps in a browser" not in off.output
    assert set(apis_by_name(deployment)) == {API}
    permissions = statements(lambda_.get_policy(FunctionName=FUNCTION)["Policy"])
    assert set(permissions) == {f"apigateway-{API}"}
    environment = lambda_.get_function_configuration(FunctionName=FUNCTION)["Environment"]
    assert not set(PAGES_VARIABLES) & set(environment["Variables"])
    assert ask_page(environment["Variables"], console, "/proxy.html")[0] == 404
    deployment.deploy(signaling_aws_proxy_pages="false").assert_ok().assert_unchanged()


def test_a_secret_given_from_the_vault_is_deployed_and_none_is_generated(
    deployment: AwsDeployment,
) -> None:
    secret = "vault-secret-0123456789-0123456789-abcdef"
    run = deployment.deploy(signaling_aws_secret=secret).assert_ok()
    assert secret not in run.output
    config = deployment.client("lambda").get_function_configuration(FunctionName=FUNCTION)
    assert config["Environment"]["Variables"]["SIGNALING_SECRET"] == secret
    assert not (deployment.credentials_dir / "signaling-secret").exists()
    client_token = (deployment.credentials_dir / "client.token").read_text().strip()
    assert verify_token(secret.encode(), client_token).role == "client"

    short = deployment.deploy(signaling_aws_secret="too-short")
    assert short.returncode != 0
    assert "signaling_aws_secret holds 9 characters, but a signing secret needs at least 32" in (
        " ".join(short.output.split())
    )


def test_update_lambda_publishes_changed_code_waits_and_keeps_the_configuration(
    deployment: AwsDeployment, tmp_path: Path
) -> None:
    deployment.deploy().assert_ok()
    lambda_ = deployment.client("lambda")
    before = lambda_.get_function_configuration(FunctionName=FUNCTION)

    unchanged = deployment.playbook("playbooks/update-lambda.yml").assert_ok()
    assert unchanged.changed == 0
    assert f"{FUNCTION} already runs this code" in unchanged.output

    source = tmp_path / "source"
    for name, path in handler_sources().items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, source / name)
    handler = source / "signaling_lambda" / "handler.py"
    handler.write_text(handler.read_text() + "\n# a change of code\n")
    new_sha = code_sha256(build_zip_bytes(handler_sources(source / "signaling_lambda")))
    assert new_sha != before["CodeSha256"]

    updated = deployment.playbook(
        "playbooks/update-lambda.yml", signaling_aws_source_dir=str(source)
    ).assert_ok()
    assert updated.changed == 1
    after = lambda_.get_function_configuration(FunctionName=FUNCTION)
    assert after["CodeSha256"] == new_sha
    assert after["LastUpdateStatus"] == "Successful"
    versions = [
        v["Version"] for v in lambda_.list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    ]
    assert f"Published version {max(v for v in versions if v != '$LATEST')} of {FUNCTION}" in (
        updated.output
    )
    for key in ("Timeout", "MemorySize", "Environment", "Role", "Handler", "Runtime"):
        assert after[key] == before[key], key

    again = deployment.playbook("playbooks/update-lambda.yml", signaling_aws_source_dir=str(source))
    again.assert_ok().assert_unchanged()
    assert len(lambda_.list_versions_by_function(FunctionName=FUNCTION)["Versions"]) == len(
        versions
    )


def revocation_list(path: Path, *ids: str) -> str:
    entries = [{"id": ident, "name": f"client-{n}"} for n, ident in enumerate(ids)]
    path.write_text(json.dumps({"revoked": entries}))
    return str(path)


def test_the_revocation_list_reaches_the_function_and_a_deploy_keeps_it(
    deployment: AwsDeployment, tmp_path: Path
) -> None:
    deployment.deploy().assert_ok()
    lambda_ = deployment.client("lambda")

    def environment() -> dict[str, str]:
        config = lambda_.get_function_configuration(FunctionName=FUNCTION)
        return dict(config["Environment"]["Variables"])

    before = environment()
    assert "SIGNALING_REVOKED" not in before
    # What site.yml's last play does once client_credentials has published its list.
    listed = revocation_list(tmp_path / "revoked.json", "fedcba9876543210", "0123456789abcdef")
    handed = deployment.playbook("playbooks/revocation.yml", homelab_p2p_revocation_list=listed)
    assert handed.assert_ok().changed == 1
    after = environment()
    assert after.pop("SIGNALING_REVOKED") == "0123456789abcdef,fedcba9876543210"
    assert after == before  # the secret and the registry's settings untouched
    again = deployment.playbook("playbooks/revocation.yml", homelab_p2p_revocation_list=listed)
    again.assert_ok().assert_unchanged()

    # A deploy that does not know the list (signaling alone) keeps it; one that does, sets it.
    deployment.deploy().assert_ok().assert_unchanged()
    assert environment()["SIGNALING_REVOKED"] == "0123456789abcdef,fedcba9876543210"
    grown = revocation_list(tmp_path / "grown.json", "0123456789abcdef", "00000000000000aa")
    preview = deployment.deploy("--check", homelab_p2p_revocation_list=grown).assert_ok()
    assert preview.changed > 0
    assert environment()["SIGNALING_REVOKED"] == "0123456789abcdef,fedcba9876543210"
    assert deployment.deploy(homelab_p2p_revocation_list=grown).assert_ok().changed == 1
    assert environment()["SIGNALING_REVOKED"] == "00000000000000aa,0123456789abcdef"

    too_many = revocation_list(tmp_path / "too-many.json", *(f"{n:016x}" for n in range(201)))
    refused = deployment.playbook("playbooks/revocation.yml", homelab_p2p_revocation_list=too_many)
    assert refused.returncode != 0
    assert "holds 201 credentials, more than the 200 the Lambda's environment (4 KB) can hold" in (
        " ".join(refused.output.split())
    )


def test_teardown_removes_everything_and_a_second_teardown_changes_nothing(
    deployment: AwsDeployment,
) -> None:
    deployment.deploy().assert_ok()
    assert deployment.playbook("playbooks/teardown-aws.yml").assert_ok().changed > 0
    deployment.playbook("playbooks/teardown-aws.yml").assert_ok().assert_unchanged()

    assert deployment.client("lambda").list_functions()["Functions"] == []
    assert deployment.client("apigatewayv2").get_apis()["Items"] == []
    assert deployment.client("dynamodb").list_tables()["TableNames"] == []
    assert deployment.client("iam").list_roles()["Roles"] == []
    assert deployment.client("logs").describe_log_groups()["logGroups"] == []
