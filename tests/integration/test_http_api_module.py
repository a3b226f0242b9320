"""homelab_p2p_http_api, the project's API Gateway HTTP API module, against moto_server.

The module runs as Ansible runs it, through a proxy that records every request
(tests/support/aws_modules.py). Every outcome is read back from moto with boto3, not taken from
the module's word.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.aws_modules import (
    ENVIRONMENT,
    ModuleRunner,
    RecordingProxy,
    integrations_of,
    invocation_uri,
    only_api,
    routes_of,
    succeeded,
)

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "roles/signaling_aws/library/homelab_p2p_http_api.py"
NAME = "homelab-p2p-console"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:pages-fn"
TAGS = {"project": "homelab-p2p-bridge", "owner": "ops"}
THROTTLING = {"ThrottlingBurstLimit": 40, "ThrottlingRateLimit": 20.0}


class Module(ModuleRunner):
    """homelab_p2p_http_api on the API named NAME."""

    def present(self, **args: Any) -> dict[str, Any]:
        """The module with the arguments of a converged pages API, overridden by args."""
        return self(**{"lambda_arn": LAMBDA, "tags": TAGS, **args})


@pytest.fixture
def module(tmp_path: Path, proxy: RecordingProxy) -> Module:
    return Module(MODULE, tmp_path, proxy, name=NAME)


def stage_path(api_id: str) -> str:
    """The path of the $default stage in the management API (botocore quotes the $)."""
    return f"/v2/apis/{api_id}/stages/%24default"


def test_create_builds_api_integration_route_stage_and_tags(module: Module, apigw: Any) -> None:
    result = succeeded(module.present(description="Proxy console"))

    assert result["changed"] is True
    api = only_api(apigw)
    api_id = api["ApiId"]
    assert (api["Name"], api["ProtocolType"], api["Description"]) == (
        NAME,
        "HTTP",
        "Proxy console",
    )
    [integration] = integrations_of(apigw, api_id)
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["IntegrationMethod"] == "POST"
    assert integration["IntegrationUri"] == invocation_uri(LAMBDA)
    assert integration["PayloadFormatVersion"] == "2.0"
    [(key, route)] = routes_of(apigw, api_id).items()
    assert key == "$default"
    assert route["Target"] == f"integrations/{integration['IntegrationId']}"
    [stage] = apigw.get_stages(ApiId=api_id)["Items"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("$default", True)
    settings = stage["DefaultRouteSettings"]
    assert {key: settings.get(key) for key in THROTTLING} == THROTTLING
    tags_arn = f"arn:aws:apigateway:us-east-1::/apis/{api_id}"
    assert apigw.get_tags(ResourceArn=tags_arn)["Tags"] == TAGS

    assert result["api_id"] == api_id
    assert result["api_endpoint"] == api["ApiEndpoint"]
    assert result["url"] == f"https://{api_id}.execute-api.us-east-1.amazonaws.com"
    assert result["integration_id"] == integration["IntegrationId"]
    assert result["route_id"] == route["RouteId"]
    assert result["stage"] == "$default"


def test_throttling_arguments_go_to_the_new_stage(module: Module, apigw: Any) -> None:
    # Strings, as a role's "{{ ... }}" hands them over.
    api_id = succeeded(module.present(throttling_burst_limit="7", throttling_rate_limit="2.5"))[
        "api_id"
    ]

    [stage] = apigw.get_stages(ApiId=api_id)["Items"]
    settings = stage["DefaultRouteSettings"]
    assert (settings["ThrottlingBurstLimit"], settings["ThrottlingRateLimit"]) == (7, 2.5)
    again = module.present(throttling_burst_limit=7, throttling_rate_limit=2.5)
    assert succeeded(again)["changed"] is False


def test_the_same_arguments_again_change_nothing(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    first = succeeded(module.present(description="Proxy console"))

    second = succeeded(module.present(description="Proxy console"))

    assert second["changed"] is False
    assert proxy.requests, "the second run did not ask moto anything"
    assert {method for method, _ in proxy.requests} == {"GET"}
    for key in ("api_id", "api_endpoint", "url", "integration_id", "route_id", "stage"):
        assert second[key] == first[key], key
    assert len(apigw.get_apis()["Items"]) == 1


def test_check_mode_on_an_empty_account_creates_nothing(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    result = succeeded(module.present(check=True))

    assert result["changed"] is True
    assert (result["api_id"], result["url"], result["route_id"]) == (None, None, None)
    assert proxy.writes() == []
    assert apigw.get_apis()["Items"] == []


def test_check_mode_reports_without_changing_a_converged_api(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    succeeded(module.present(description="Proxy console"))

    assert succeeded(module.present(check=True))["changed"] is False

    planned = succeeded(module.present(check=True, description="Other", tags={"a": "b"}))
    assert planned["changed"] is True
    assert proxy.writes() == []
    api = only_api(apigw)
    assert (api["Description"], api["Tags"]) == ("Proxy console", TAGS)


def test_description_and_tags_change_in_place(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    first = succeeded(module.present(description="Proxy console"))
    arn = f"arn:aws:apigateway:us-east-1::/apis/{first['api_id']}"

    result = succeeded(module.present(description="App origin", tags={"project": "renamed"}))

    assert result["changed"] is True
    assert result["api_id"] == first["api_id"]
    api = only_api(apigw)
    assert (api["ApiId"], api["Description"]) == (first["api_id"], "App origin")
    assert apigw.get_tags(ResourceArn=arn)["Tags"] == {"project": "renamed"}
    # UpdateApi, TagResource and UntagResource: the rest was as asked.
    writes = [(method, path.split("?")[0]) for method, path in proxy.writes()]
    tags_path = f"/v2/tags/{quote(arn, safe='')}"
    assert sorted(writes) == [
        ("DELETE", tags_path),
        ("PATCH", f"/v2/apis/{first['api_id']}"),
        ("POST", tags_path),
    ]

    kept = succeeded(module.present(tags={"tier": "pages"}, purge_tags=False))
    assert kept["changed"] is True
    assert apigw.get_tags(ResourceArn=arn)["Tags"] == {"project": "renamed", "tier": "pages"}
    # Without a description or tags the module leaves those there alone.
    untouched = succeeded(module.present(tags=None))
    assert untouched["changed"] is False
    assert only_api(apigw)["Description"] == "App origin"


def test_a_foreign_route_is_deleted_and_the_default_route_retargeted(
    module: Module, apigw: Any
) -> None:
    first = succeeded(module.present())
    api_id = first["api_id"]
    other = apigw.create_integration(
        ApiId=api_id,
        IntegrationType="HTTP_PROXY",
        IntegrationMethod="GET",
        IntegrationUri="https://example.com",
        PayloadFormatVersion="1.0",
    )["IntegrationId"]
    apigw.create_route(ApiId=api_id, RouteKey="GET /admin", Target=f"integrations/{other}")
    apigw.update_route(ApiId=api_id, RouteId=first["route_id"], Target=f"integrations/{other}")

    result = succeeded(module.present())

    assert result["changed"] is True
    routes = routes_of(apigw, api_id)
    assert list(routes) == ["$default"]
    assert routes["$default"]["RouteId"] == first["route_id"]
    assert routes["$default"]["Target"] == f"integrations/{first['integration_id']}"
    # Another integration is not the module's business: it stays.
    assert len(integrations_of(apigw, api_id)) == 2
    assert succeeded(module.present())["changed"] is False


def test_an_integration_on_payload_format_1_is_moved_to_2_in_place(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    first = succeeded(module.present())
    api_id, integration_id = first["api_id"], first["integration_id"]
    apigw.update_integration(ApiId=api_id, IntegrationId=integration_id, PayloadFormatVersion="1.0")

    result = succeeded(module.present())

    assert (result["changed"], result["integration_id"]) == (True, integration_id)
    [integration] = integrations_of(apigw, api_id)
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"] == invocation_uri(LAMBDA)
    assert proxy.writes() == [("PATCH", f"/v2/apis/{api_id}/integrations/{integration_id}")]


def test_a_new_lambda_arn_updates_the_integration_in_place(module: Module, apigw: Any) -> None:
    first = succeeded(module.present())
    new_arn = f"{LAMBDA}-v2"

    result = succeeded(module.present(lambda_arn=new_arn))

    assert result["changed"] is True
    [integration] = integrations_of(apigw, first["api_id"])
    assert integration["IntegrationId"] == first["integration_id"]
    assert integration["IntegrationUri"] == invocation_uri(new_arn)
    assert result["route_id"] == first["route_id"]


def test_other_throttling_updates_the_stage(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    api_id = succeeded(module.present())["api_id"]
    # moto has no UpdateStage: the proxy answers it the way AWS does.
    answer = json.dumps({"stageName": "$default", "autoDeploy": True}).encode()
    proxy.canned["PATCH", stage_path(api_id)] = (200, {"Content-Type": "application/json"}, answer)

    result = succeeded(module.present(throttling_burst_limit=5))

    assert result["changed"] is True
    assert proxy.writes() == [("PATCH", stage_path(api_id))]


def test_diff_mode_shows_before_and_after(module: Module) -> None:
    created = succeeded(module.present(diff=True, description="Proxy console"))
    stage: dict[str, Any] = {
        "name": "$default",
        "auto_deploy": True,
        "throttling_burst_limit": 40,
        "throttling_rate_limit": 20.0,
    }
    converged = {
        "description": "Proxy console",
        "integration": {"uri": invocation_uri(LAMBDA), "payload_format_version": "2.0"},
        "routes": ["$default"],
        "stage": stage,
        "tags": TAGS,
    }
    assert created["diff"] == {"before": {}, "after": converged}

    planned = succeeded(
        module.present(check=True, diff=True, throttling_rate_limit=5, tags={"owner": "me"})
    )

    assert planned["diff"]["before"] == converged
    assert planned["diff"]["after"] == {
        **converged,
        "stage": {**stage, "throttling_rate_limit": 5.0},
        "tags": {"owner": "me"},
    }


def test_a_websocket_api_of_the_same_name_is_left_alone(module: Module, apigw: Any) -> None:
    websocket = apigw.create_api(
        Name=NAME, ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]

    result = succeeded(module.present())

    assert result["api_id"] != websocket
    protocols = {api["ApiId"]: api["ProtocolType"] for api in apigw.get_apis()["Items"]}
    assert protocols == {websocket: "WEBSOCKET", result["api_id"]: "HTTP"}
    assert routes_of(apigw, websocket) == {}
    assert succeeded(module(state="absent"))["api_id"] == result["api_id"]
    assert [api["ApiId"] for api in apigw.get_apis()["Items"]] == [websocket]
    assert succeeded(module(state="absent"))["changed"] is False


def test_absent_deletes_the_api_once(module: Module, apigw: Any) -> None:
    api_id = succeeded(module.present())["api_id"]

    planned = succeeded(module(state="absent", check=True))
    assert (planned["changed"], planned["api_id"]) == (True, api_id)
    assert only_api(apigw)["ApiId"] == api_id

    deleted = succeeded(module(state="absent", diff=True))
    assert (deleted["changed"], deleted["api_id"]) == (True, api_id)
    assert deleted["diff"]["after"] == {}
    assert deleted["diff"]["before"]["routes"] == ["$default"]
    assert apigw.get_apis()["Items"] == []

    again = succeeded(module(state="absent"))
    assert (again["changed"], again["api_id"]) == (False, None)


def test_two_apis_of_the_same_name_fail_with_one_sentence(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    ids = sorted(apigw.create_api(Name=NAME, ProtocolType="HTTP")["ApiId"] for _ in range(2))

    result = module.present()

    assert result["failed"] is True
    assert result["msg"] == (
        f"There are 2 HTTP APIs named {NAME} ({ids[0]}, {ids[1]}); delete or rename all but "
        "one so the name picks a single API, then run again"
    )
    assert proxy.writes() == []
    assert len(apigw.get_apis()["Items"]) == 2


def test_a_qualified_lambda_arn_is_refused_before_any_call(
    module: Module, proxy: RecordingProxy
) -> None:
    result = module.present(lambda_arn=f"{LAMBDA}:live")

    assert result["failed"] is True
    assert result["msg"] == (
        f"lambda_arn {LAMBDA}:live is not an unqualified Lambda function ARN; pass "
        "arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME without a version or alias suffix"
    )
    assert proxy.requests == []


def test_the_documentation_parses_and_covers_the_arguments_and_the_result(
    module: Module,
) -> None:
    """What ansible-doc shows; a YAML slip in DOCUMENTATION hides the whole page."""
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    shown = subprocess.run(
        [str(ansible_doc), "--json", "-M", str(MODULE.parent), MODULE.stem],
        capture_output=True,
        text=True,
        env={**ENVIRONMENT, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    page = json.loads(shown.stdout)[MODULE.stem]
    result = succeeded(module.present(diff=True, description="Proxy console"))

    options = page["doc"]["options"]
    arguments = {"name", "state", "description", "lambda_arn", "tags", "purge_tags"}
    assert arguments | {"throttling_burst_limit", "throttling_rate_limit"} <= set(options)
    assert set(result) - {"changed", "invocation"} <= set(page["return"])
