"""homelab_p2p_websocket_api, the project's API Gateway WebSocket module, against moto_server.

The module runs as Ansible runs it (a JSON file of arguments, JSON on stdout), through a small
proxy that records every request, so "no write call" is something a test can see
(tests/support/aws_modules.py). Every outcome is read back from moto with boto3, not taken from
the module's word.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
MODULE = ROOT / "roles/signaling_aws/library/homelab_p2p_websocket_api.py"
NAME = "homelab-p2p-signaling"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:signal-fn"
ROUTES = ["$connect", "$disconnect", "$default", "sendSignal"]
TAGS = {"project": "homelab-p2p-bridge", "owner": "ops"}
AUTHORIZER = f"{NAME}-token"
TOKEN_SOURCE = ["route.request.querystring.token"]
DENIED = json.dumps(
    {
        "message": "User: arn:aws:iam::123456789012:user/deployer is not authorized to perform: "
        "apigateway:POST on resource: arn:aws:apigateway:us-east-1::/apis"
    }
).encode()


class Module(ModuleRunner):
    """homelab_p2p_websocket_api on the API named NAME."""

    def present(self, **args: Any) -> dict[str, Any]:
        """The module with the arguments of a converged signaling API, overridden by args."""
        signaling = {
            "lambda_arn": LAMBDA,
            "routes": ROUTES,
            "connect_authorizer": {"name": AUTHORIZER},
            "tags": TAGS,
        }
        return self(**{**signaling, **args})


@pytest.fixture
def module(tmp_path: Path, proxy: RecordingProxy) -> Module:
    return Module(MODULE, tmp_path, proxy, name=NAME)


def authorizers_of(apigw: Any, api_id: str) -> list[dict[str, Any]]:
    authorizers: list[dict[str, Any]] = apigw.get_authorizers(ApiId=api_id)["Items"]
    return authorizers


def guard_of_connect(apigw: Any, api_id: str) -> dict[str, Any]:
    """The one authorizer of the API, after checking that it guards the $connect route."""
    [authorizer] = authorizers_of(apigw, api_id)
    connect = routes_of(apigw, api_id)["$connect"]
    assert (connect["AuthorizationType"], connect["AuthorizerId"]) == (
        "CUSTOM",
        authorizer["AuthorizerId"],
    )
    return authorizer


def test_create_builds_api_integration_routes_stage_and_tags(module: Module, apigw: Any) -> None:
    result = succeeded(module.present(description="WebRTC signaling"))

    assert result["changed"] is True
    api = only_api(apigw)
    api_id = api["ApiId"]
    assert api["Name"] == NAME
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["Description"] == "WebRTC signaling"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    [integration] = integrations_of(apigw, api_id)
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["IntegrationMethod"] == "POST"
    assert integration["IntegrationUri"] == invocation_uri(LAMBDA)
    routes = routes_of(apigw, api_id)
    assert sorted(routes) == sorted(ROUTES)
    target = f"integrations/{integration['IntegrationId']}"
    assert {key: route["Target"] for key, route in routes.items()} == dict.fromkeys(ROUTES, target)
    authorizer = guard_of_connect(apigw, api_id)
    assert authorizer["Name"] == AUTHORIZER
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerUri"] == invocation_uri(LAMBDA)
    assert authorizer["IdentitySource"] == TOKEN_SOURCE
    # Only $connect can have an authorizer on a WebSocket API; the others are left open.
    others = {
        route.get("AuthorizationType", "NONE") for key, route in routes.items() if key != "$connect"
    }
    assert others == {"NONE"}
    [stage] = apigw.get_stages(ApiId=api_id)["Items"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("prod", True)
    tags_arn = f"arn:aws:apigateway:us-east-1::/apis/{api_id}"
    assert apigw.get_tags(ResourceArn=tags_arn)["Tags"] == TAGS

    assert result["api_id"] == api_id
    assert result["api_endpoint"] == api["ApiEndpoint"]
    assert result["url"] == f"wss://{api_id}.execute-api.us-east-1.amazonaws.com/prod"
    assert result["integration_id"] == integration["IntegrationId"]
    assert result["route_ids"] == {key: route["RouteId"] for key, route in routes.items()}
    assert result["authorizer_id"] == authorizer["AuthorizerId"]
    assert result["stage"] == "prod"


def test_the_same_arguments_again_change_nothing(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    first = succeeded(module.present(description="WebRTC signaling"))

    second = succeeded(module.present(description="WebRTC signaling"))

    assert second["changed"] is False
    assert proxy.writes() == []
    assert proxy.requests, "the second run did not ask moto anything"
    keys = ("api_id", "api_endpoint", "url", "integration_id", "route_ids", "authorizer_id")
    for key in (*keys, "stage"):
        assert second[key] == first[key], key
    assert len(apigw.get_apis()["Items"]) == 1
    assert len(authorizers_of(apigw, first["api_id"])) == 1


def test_description_and_route_selection_change_in_place(module: Module, apigw: Any) -> None:
    first = succeeded(module.present(description="WebRTC signaling"))

    result = succeeded(
        module.present(description="Signaling v2", route_selection_expression="$request.body.op")
    )

    assert result["changed"] is True
    api = only_api(apigw)
    assert api["ApiId"] == first["api_id"]
    assert (api["Description"], api["RouteSelectionExpression"]) == (
        "Signaling v2",
        "$request.body.op",
    )
    # Without a description the module leaves the one there alone.
    unchanged = module.present(route_selection_expression="$request.body.op")
    assert succeeded(unchanged)["changed"] is False
    assert only_api(apigw)["Description"] == "Signaling v2"


def test_a_route_added_and_one_removed(module: Module, apigw: Any) -> None:
    first = succeeded(module.present())
    wanted = ["$connect", "$disconnect", "sendSignal", "register"]

    result = succeeded(module.present(routes=wanted))

    assert result["changed"] is True
    routes = routes_of(apigw, first["api_id"])
    assert sorted(routes) == sorted(wanted)
    assert routes["register"]["Target"] == f"integrations/{first['integration_id']}"
    for kept in ("$connect", "$disconnect", "sendSignal"):
        assert routes[kept]["RouteId"] == first["route_ids"][kept]
    assert result["route_ids"] == {key: route["RouteId"] for key, route in routes.items()}


def test_without_purge_routes_an_unlisted_route_stays(module: Module, apigw: Any) -> None:
    first = succeeded(module.present())

    result = succeeded(module.present(routes=["$connect", "ping"], purge_routes=False))

    assert result["changed"] is True
    routes = routes_of(apigw, first["api_id"])
    assert sorted(routes) == sorted([*ROUTES, "ping"])
    assert set(result["route_ids"]) == set(routes)


def test_a_route_pointing_elsewhere_is_retargeted(module: Module, apigw: Any) -> None:
    first = succeeded(module.present())
    api_id = first["api_id"]
    other = apigw.create_integration(
        ApiId=api_id, IntegrationType="MOCK", RequestTemplates={"200": "{}"}
    )
    apigw.update_route(
        ApiId=api_id,
        RouteId=first["route_ids"]["sendSignal"],
        Target=f"integrations/{other['IntegrationId']}",
    )

    result = succeeded(module.present())

    assert result["changed"] is True
    assert routes_of(apigw, api_id)["sendSignal"]["Target"] == (
        f"integrations/{first['integration_id']}"
    )
    # Another integration is not the module's business: it stays.
    assert len(integrations_of(apigw, api_id)) == 2


def test_a_new_lambda_arn_updates_the_integration_in_place(module: Module, apigw: Any) -> None:
    first = succeeded(module.present())
    new_arn = "arn:aws:lambda:us-east-1:123456789012:function:signal-fn-v2"

    result = succeeded(module.present(lambda_arn=new_arn))

    assert result["changed"] is True
    [integration] = integrations_of(apigw, first["api_id"])
    assert integration["IntegrationId"] == first["integration_id"]
    assert integration["IntegrationUri"] == invocation_uri(new_arn)
    assert result["route_ids"] == first["route_ids"]
    authorizer = guard_of_connect(apigw, first["api_id"])
    assert authorizer["AuthorizerId"] == first["authorizer_id"]
    assert authorizer["AuthorizerUri"] == invocation_uri(new_arn)
    assert succeeded(module.present(lambda_arn=new_arn))["changed"] is False


def test_an_authorizer_that_drifted_is_repaired_in_place(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    first = succeeded(module.present())
    api_id, authorizer_id = first["api_id"], first["authorizer_id"]
    apigw.update_authorizer(
        ApiId=api_id,
        AuthorizerId=authorizer_id,
        AuthorizerUri=invocation_uri(f"{LAMBDA}-elsewhere"),
        IdentitySource=["route.request.header.Authorization"],
    )
    apigw.update_route(
        ApiId=api_id, RouteId=first["route_ids"]["$connect"], AuthorizationType="NONE"
    )

    result = succeeded(module.present())

    assert result["changed"] is True
    assert result["authorizer_id"] == authorizer_id
    authorizer = guard_of_connect(apigw, api_id)
    assert authorizer["AuthorizerId"] == authorizer_id
    assert authorizer["AuthorizerUri"] == invocation_uri(LAMBDA)
    assert authorizer["IdentitySource"] == TOKEN_SOURCE
    assert sorted(proxy.writes()) == [
        ("PATCH", f"/v2/apis/{api_id}/authorizers/{authorizer_id}"),
        ("PATCH", f"/v2/apis/{api_id}/routes/{first['route_ids']['$connect']}"),
    ]
    assert succeeded(module.present())["changed"] is False


def test_connect_guarded_by_another_authorizer_is_guarded_by_its_own_again(
    module: Module, apigw: Any
) -> None:
    first = succeeded(module.present())
    api_id = first["api_id"]
    other = apigw.create_authorizer(
        ApiId=api_id,
        Name="someone-elses",
        AuthorizerType="REQUEST",
        AuthorizerUri=invocation_uri(f"{LAMBDA}-elsewhere"),
        IdentitySource=["route.request.header.Authorization"],
    )["AuthorizerId"]
    apigw.update_route(
        ApiId=api_id,
        RouteId=first["route_ids"]["$connect"],
        AuthorizationType="CUSTOM",
        AuthorizerId=other,
    )

    result = succeeded(module.present())

    assert result["changed"] is True
    connect = routes_of(apigw, api_id)["$connect"]
    assert (connect["AuthorizationType"], connect["AuthorizerId"]) == (
        "CUSTOM",
        first["authorizer_id"],
    )
    # Another authorizer is not the module's business: it stays.
    assert {a["AuthorizerId"] for a in authorizers_of(apigw, api_id)} == {
        first["authorizer_id"],
        other,
    }


def test_an_authorizer_of_that_name_is_adopted_not_duplicated(module: Module, apigw: Any) -> None:
    # As a run interrupted between creating the authorizer and guarding $connect leaves it.
    api_id = succeeded(module.present(connect_authorizer=None))["api_id"]
    left = apigw.create_authorizer(
        ApiId=api_id,
        Name=AUTHORIZER,
        AuthorizerType="REQUEST",
        AuthorizerUri=invocation_uri(LAMBDA),
        IdentitySource=TOKEN_SOURCE,
    )["AuthorizerId"]

    result = succeeded(module.present())

    assert (result["changed"], result["authorizer_id"]) == (True, left)
    assert guard_of_connect(apigw, api_id)["AuthorizerId"] == left


def test_check_mode_plans_the_authorizer_without_creating_it(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    api_id = succeeded(module.present(connect_authorizer=None))["api_id"]

    planned = succeeded(module.present(check=True, diff=True))

    assert planned["changed"] is True
    assert planned["authorizer_id"] is None
    assert proxy.writes() == []
    assert authorizers_of(apigw, api_id) == []
    assert routes_of(apigw, api_id)["$connect"].get("AuthorizationType", "NONE") == "NONE"
    assert planned["diff"]["before"]["connect_authorizer"] is None
    assert planned["diff"]["after"]["connect_authorizer"] == {
        "name": AUTHORIZER,
        "type": "REQUEST",
        "uri": invocation_uri(LAMBDA),
        "identity_source": TOKEN_SOURCE,
    }

    made = succeeded(module.present())
    assert made["changed"] is True
    assert guard_of_connect(apigw, api_id)["AuthorizerId"] == made["authorizer_id"]
    assert succeeded(module.present(check=True))["changed"] is False


def test_without_connect_authorizer_the_guard_of_connect_is_left_alone(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    first = succeeded(module.present())

    result = succeeded(module.present(connect_authorizer=None))

    assert (result["changed"], result["authorizer_id"]) == (False, first["authorizer_id"])
    assert proxy.writes() == []
    assert guard_of_connect(apigw, first["api_id"])["AuthorizerId"] == first["authorizer_id"]


def test_an_authorizer_without_a_connect_route_is_refused_before_any_call(
    module: Module, proxy: RecordingProxy
) -> None:
    result = module.present(routes=["$default", "sendSignal"])

    assert result["failed"] is True
    assert result["msg"] == (
        "connect_authorizer guards the $connect route, which routes does not list; add "
        "$connect to routes or leave connect_authorizer out"
    )
    assert proxy.requests == []


def test_tags_are_changed_purged_or_kept(module: Module, apigw: Any) -> None:
    api_id = succeeded(module.present())["api_id"]
    arn = f"arn:aws:apigateway:us-east-1::/apis/{api_id}"

    changed = succeeded(module.present(tags={"project": "renamed"}))
    assert changed["changed"] is True
    assert apigw.get_tags(ResourceArn=arn)["Tags"] == {"project": "renamed"}

    kept = succeeded(module.present(tags={"tier": "signaling"}, purge_tags=False))
    assert kept["changed"] is True
    assert apigw.get_tags(ResourceArn=arn)["Tags"] == {"project": "renamed", "tier": "signaling"}

    untouched = succeeded(module.present(tags=None))
    assert untouched["changed"] is False
    assert apigw.get_tags(ResourceArn=arn)["Tags"] == {"project": "renamed", "tier": "signaling"}


def test_check_mode_on_an_empty_account_creates_nothing(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    result = succeeded(module.present(check=True))

    assert result["changed"] is True
    assert result["api_id"] is None
    assert result["url"] is None
    assert proxy.writes() == []
    assert apigw.get_apis()["Items"] == []


def test_check_mode_reports_without_changing_a_converged_api(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    first = succeeded(module.present())

    assert succeeded(module.present(check=True))["changed"] is False

    planned = succeeded(module.present(check=True, routes=["$connect"], tags={"a": "b"}))
    assert planned["changed"] is True
    assert proxy.writes() == []
    assert sorted(routes_of(apigw, first["api_id"])) == sorted(ROUTES)
    assert only_api(apigw)["Tags"] == TAGS


def test_diff_mode_shows_before_and_after(module: Module) -> None:
    created = succeeded(module.present(diff=True, description="WebRTC signaling"))
    converged = {
        "description": "WebRTC signaling",
        "route_selection_expression": "$request.body.action",
        "integration": invocation_uri(LAMBDA),
        "routes": sorted(ROUTES),
        "connect_authorizer": {
            "name": AUTHORIZER,
            "type": "REQUEST",
            "uri": invocation_uri(LAMBDA),
            "identity_source": TOKEN_SOURCE,
        },
        "stage": {"name": "prod", "auto_deploy": True},
        "tags": TAGS,
    }
    assert created["diff"] == {"before": {}, "after": converged}

    planned = succeeded(
        module.present(check=True, diff=True, routes=["$connect", "ping"], tags={"owner": "me"})
    )

    assert planned["diff"]["before"] == converged
    assert planned["diff"]["after"] == {
        **converged,
        "routes": ["$connect", "ping"],
        "tags": {"owner": "me"},
    }


def test_absent_deletes_the_api_once(module: Module, apigw: Any) -> None:
    api_id = succeeded(module.present())["api_id"]

    planned = succeeded(module(state="absent", check=True))
    assert (planned["changed"], planned["api_id"]) == (True, api_id)
    assert only_api(apigw)["ApiId"] == api_id

    deleted = succeeded(module(state="absent", diff=True))
    assert (deleted["changed"], deleted["api_id"]) == (True, api_id)
    assert deleted["diff"]["after"] == {}
    assert deleted["diff"]["before"]["routes"] == sorted(ROUTES)
    assert apigw.get_apis()["Items"] == []

    again = succeeded(module(state="absent"))
    assert (again["changed"], again["api_id"]) == (False, None)


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
    result = succeeded(module.present(diff=True, description="WebRTC signaling"))

    options = page["doc"]["options"]
    arguments = {"lambda_arn", "routes", "connect_authorizer", "tags", "description"}
    assert arguments <= set(options)
    assert set(options["connect_authorizer"]["suboptions"]) == {"name", "identity_source"}
    assert set(result) - {"changed", "invocation"} <= set(page["return"])


def test_two_apis_of_the_same_name_fail_with_one_sentence(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    ids = sorted(
        apigw.create_api(
            Name=NAME,
            ProtocolType="WEBSOCKET",
            RouteSelectionExpression="$request.body.action",
        )["ApiId"]
        for _ in range(2)
    )

    result = module.present()

    assert result["failed"] is True
    assert result["msg"] == (
        f"There are 2 WebSocket APIs named {NAME} ({ids[0]}, {ids[1]}); delete or rename all but "
        "one so the name picks a single API, then run again"
    )
    assert proxy.writes() == []
    assert len(apigw.get_apis()["Items"]) == 2


def test_an_http_api_of_the_same_name_is_left_alone(module: Module, apigw: Any) -> None:
    http_api = apigw.create_api(Name=NAME, ProtocolType="HTTP")["ApiId"]

    result = succeeded(module.present())

    assert result["api_id"] != http_api
    protocols = {api["ApiId"]: api["ProtocolType"] for api in apigw.get_apis()["Items"]}
    assert protocols == {http_api: "HTTP", result["api_id"]: "WEBSOCKET"}
    assert succeeded(module(state="absent"))["api_id"] == result["api_id"]
    assert [api["ApiId"] for api in apigw.get_apis()["Items"]] == [http_api]


def test_access_denied_names_the_call_and_the_permission(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    proxy.canned["POST", "/v2/apis"] = (403, {"x-amzn-ErrorType": "AccessDeniedException"}, DENIED)

    result = module.present()

    assert result["failed"] is True
    assert result["msg"].startswith(
        "The deploying identity may not call API Gateway CreateApi; grant it apigateway:POST "
        "on arn:aws:apigateway:us-east-1::/apis and run again: "
    )
    assert "AccessDeniedException" in result["msg"]
    assert apigw.get_apis()["Items"] == []


def test_a_qualified_lambda_arn_is_refused_before_any_call(
    module: Module, proxy: RecordingProxy
) -> None:
    result = module.present(lambda_arn=f"{LAMBDA}:3")

    assert result["failed"] is True
    assert result["msg"] == (
        f"lambda_arn {LAMBDA}:3 is not an unqualified Lambda function ARN; pass "
        "arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME without a version or alias suffix"
    )
    assert proxy.requests == []


def test_without_auto_deploy_a_change_is_deployed_and_a_rerun_is_not(
    module: Module, proxy: RecordingProxy, apigw: Any
) -> None:
    api_id = apigw.create_api(
        Name=NAME, ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]
    # moto has no CreateDeployment: the proxy answers it the way AWS does.
    deployment = json.dumps({"deploymentId": "d1", "deploymentStatus": "DEPLOYED"}).encode()
    deployments = ("POST", f"/v2/apis/{api_id}/deployments")
    proxy.canned[deployments] = (201, {"Content-Type": "application/json"}, deployment)

    result = succeeded(module.present(auto_deploy=False))

    assert result["changed"] is True
    assert proxy.writes()[-1] == deployments
    [stage] = apigw.get_stages(ApiId=api_id)["Items"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("prod", False)
    assert sorted(routes_of(apigw, api_id)) == sorted(ROUTES)

    again = succeeded(module.present(auto_deploy=False))
    assert again["changed"] is False
    assert proxy.writes() == []
