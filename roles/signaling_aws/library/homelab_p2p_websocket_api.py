#!/usr/bin/python
"""An API Gateway WebSocket API that hands every route to one Lambda function (signaling)."""

DOCUMENTATION = r"""
---
module: homelab_p2p_websocket_api
short_description: Manage an API Gateway WebSocket API whose routes all go to one Lambda function
description:
  - Creates, updates or deletes an API Gateway (v2) WebSocket API, found by O(name), with one
    Lambda proxy integration, the routes in O(routes) and one stage. Neither amazon.aws nor
    community.aws has an API Gateway v2 module.
  - A run that finds everything as asked makes no write call. Other integrations of the API are
    left alone; the Lambda proxy integration found is updated, never duplicated.
  - With O(connect_authorizer) the V($connect) route is guarded by a Lambda REQUEST authorizer,
    found by name, that invokes the same function; other authorizers of the API are left alone.
  - It does not let API Gateway invoke the function; use M(amazon.aws.lambda_policy) for that.
    A source ARN of C(arn:aws:execute-api:REGION:ACCOUNT:API_ID/*) covers the routes and the
    authorizer (C(API_ID/authorizers/AUTHORIZER_ID)) alike.
options:
  name:
    description: Name of the API. At most one WebSocket API of this name may exist in the region.
    type: str
    required: true
  state:
    description: Whether the API should exist. V(absent) deletes it with everything in it.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: Description of the API. Left as it is when not given.
    type: str
  route_selection_expression:
    description: Where API Gateway finds the route key of an incoming message.
    type: str
    default: $request.body.action
  lambda_arn:
    description:
      - Unqualified ARN of the Lambda function every route invokes; required when O(state=present).
      - A version or alias suffix is refused because it would pin the API to that version.
    type: str
  routes:
    description: Route keys (V($connect), V(sendSignal)...); required when O(state=present).
    type: list
    elements: str
  purge_routes:
    description: Delete the routes of the API that are not in O(routes).
    type: bool
    default: true
  connect_authorizer:
    description:
      - A Lambda REQUEST authorizer on the V($connect) route, invoking O(lambda_arn) with the
        connection request; API Gateway answers HTTP 401 when it raises C(Unauthorized), and
        hands the context of its Allow to every later event of the connection.
      - Requires V($connect) in O(routes). When not given, the V($connect) route's authorization
        is left as it is.
      - It runs once per connection, and API Gateway caches no authorizer result of a WebSocket
        API, so there is no TTL to set.
    type: dict
    suboptions:
      name:
        description: Name of the authorizer; the module finds it by this name.
        type: str
        required: true
      identity_source:
        description:
          - Where the authorizer's input is; API Gateway answers 401 without invoking the
            function when one of them is missing from the request.
        type: list
        elements: str
        default: [route.request.querystring.token]
  stage:
    description: Name of the stage clients connect to.
    type: str
    default: prod
  auto_deploy:
    description:
      - Whether API Gateway deploys every change to the stage by itself.
      - With V(false) the module creates a deployment after every run that changed the API.
        moto 5.2 implements neither CreateDeployment nor UpdateStage; tests against it keep V(true).
    type: bool
    default: true
notes:
  - Supports check mode and diff mode.
  - IAM authorizes API Gateway management calls by HTTP verb and path. The deploying identity needs
    C(apigateway:GET), C(POST), C(PATCH) and C(DELETE) on C(arn:aws:apigateway:REGION::/apis) and
    C(.../apis/*), and C(apigateway:POST) and C(DELETE) on C(.../tags/*) to change tags.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
author: homelab-p2p-bridge developers
"""

EXAMPLES = r"""
- name: Signaling API in front of the signaling function
  homelab_p2p_websocket_api:
    name: homelab-p2p-signaling
    description: WebRTC signaling for the homelab bridge
    lambda_arn: arn:aws:lambda:us-east-1:123456789012:function:homelab-p2p-signaling
    routes: [$connect, $disconnect, $default, sendSignal, register, ping]
    connect_authorizer:  # the same function checks ?token= before a connection is opened
      name: homelab-p2p-signaling-token
      identity_source: [route.request.querystring.token]
    tags:
      project: homelab-p2p-bridge
  register: signaling_api  # signaling_api.url is what clients connect to

- name: Remove the API
  homelab_p2p_websocket_api:
    name: homelab-p2p-signaling
    state: absent
"""

RETURN = r"""
api_id:
  description: Id of the API; null when there is none, or in check mode before it is created.
  type: str
  returned: always
  sample: a1b2c3d4e5
api_endpoint:
  description: Endpoint of the API as AWS reports it (moto says C(https://), AWS C(wss://)).
  type: str
  returned: when O(state=present)
  sample: wss://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com
url:
  description: The URL WebSocket clients connect to, stage included.
  type: str
  returned: when O(state=present)
  sample: wss://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod
integration_id:
  description: Id of the Lambda proxy integration.
  type: str
  returned: when O(state=present)
  sample: k7q2x9z
route_ids:
  description: Route key to route id, for every route the API has afterwards.
  type: dict
  returned: when O(state=present)
  sample: {"$connect": "r1a2b3c", "sendSignal": "r4d5e6f"}
authorizer_id:
  description: Id of the authorizer of the V($connect) route; null when the route has none, or in
    check mode before it is created.
  type: str
  returned: when O(state=present)
  sample: a1b2c3d
stage:
  description: Name of the stage.
  type: str
  returned: when O(state=present)
  sample: prod
diff:
  description: In diff mode, the API before and after (description, route selection expression,
    integration URI, sorted route keys, the V($connect) route's authorizer, stage and
    auto_deploy, tags).
  type: dict
  returned: in diff mode
"""

import contextlib
import re
from urllib.parse import urlparse

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

LAMBDA_ARN = re.compile(r"^arn:(aws[a-z-]*):lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+$")
# IAM knows API Gateway management calls by HTTP verb and path, not by operation name.
VERBS = {"get": "GET", "create": "POST", "update": "PATCH", "delete": "DELETE", "tag": "POST"}
TAG_WRITES = ("tag_resource", "untag_resource")


def permission(operation, region):
    """The IAM permission an apigatewayv2 operation needs, e.g. apigateway:POST on .../apis."""
    verb = VERBS.get(operation.split("_")[0], "DELETE")  # untag_resource is a DELETE
    path = "/apis" if operation in ("get_apis", "create_api") else "/apis/*"
    path = "/tags/*" if operation in TAG_WRITES else path
    return "apigateway:%s on arn:aws:apigateway:%s::%s" % (verb, region, path)


class Gateway:
    """The apigatewayv2 client. A failed call ends the module with what to do about it."""

    def __init__(self, module):
        self.module = module
        self.client = module.client("apigatewayv2", retry_decorator=AWSRetry.jittered_backoff())
        self.changes = []  # write operations made, or in check mode only planned

    def call(self, operation, **kwargs):
        action = "".join(word.capitalize() for word in operation.split("_"))
        try:
            return getattr(self.client, operation)(aws_retry=True, **kwargs)
        except is_boto3_error_code(["AccessDeniedException", "AccessDenied"]) as exc:
            self.module.fail_json_aws(
                exc,
                msg="The deploying identity may not call API Gateway %s; grant it %s and run again"
                % (action, permission(operation, self.module.region)),
            )
        except ClientError as exc:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(
                exc, msg="API Gateway refused %s; fix what AWS reports and run again" % action
            )
        except BotoCoreError as exc:
            self.module.fail_json_aws(
                exc,
                msg="Could not call API Gateway %s; check region, endpoint_url, credentials and "
                "the network path to AWS, then run again" % action,
            )

    def write(self, operation, **kwargs):
        """A change: made, or in check mode only counted (and then nothing comes back)."""
        self.changes.append(operation)
        return {} if self.module.check_mode else self.call(operation, **kwargs)

    def items(self, operation, **kwargs):
        """Every page of a Get* listing (moto answers with one page, AWS pages)."""
        found, token = [], {}
        while True:
            page = self.call(operation, **kwargs, **token)
            found.extend(page.get("Items", []))
            if not page.get("NextToken"):
                return found
            token = {"NextToken": page["NextToken"]}


def find_api(gateway, name):
    apis = gateway.items("get_apis")
    apis = [api for api in apis if (api["Name"], api["ProtocolType"]) == (name, "WEBSOCKET")]
    if len(apis) > 1:
        gateway.module.fail_json(
            msg="There are %d WebSocket APIs named %s (%s); delete or rename all but one so the "
            "name picks a single API, then run again"
            % (len(apis), name, ", ".join(sorted(api["ApiId"] for api in apis)))
        )
    return apis[0] if apis else None


def read_parts(gateway, api_id):
    """Integrations, routes, stages and authorizers of the API; none while it is still to be
    created."""
    if api_id is None:
        return [], [], [], []
    return tuple(
        gateway.items(operation, ApiId=api_id)
        for operation in ("get_integrations", "get_routes", "get_stages", "get_authorizers")
    )


def pick_integration(integrations, uri):
    """The Lambda proxy integration to keep: the one already on uri, else any other one."""
    proxies = [i for i in integrations if i.get("IntegrationType") == "AWS_PROXY"]
    matching = [i for i in proxies if i.get("IntegrationUri") == uri]
    return (matching or proxies or [None])[0]


def pick_stage(stages, name):
    return next((stage for stage in stages if stage.get("StageName") == name), None)


def connect_route(routes):
    return next((route for route in routes if route.get("RouteKey") == "$connect"), None)


def authorizer_of(route, authorizers):
    """The authorizer a route is guarded by, if any."""
    if route is None or route.get("AuthorizationType") != "CUSTOM":
        return None
    return next((a for a in authorizers if a["AuthorizerId"] == route.get("AuthorizerId")), None)


def pick_authorizer(authorizers, name, route):
    """The authorizer of that name to keep: the one the route already uses, else any other."""
    named = [a for a in authorizers if a.get("Name") == name]
    in_use = authorizer_of(route, authorizers)
    return in_use if in_use in named else (named or [None])[0]


def authorizer_summary(authorizer):
    if authorizer is None:
        return None
    return {
        "name": authorizer.get("Name"),
        "type": authorizer.get("AuthorizerType"),
        "uri": authorizer.get("AuthorizerUri"),
        "identity_source": list(authorizer.get("IdentitySource") or []),
    }


def summarize(api, integration, routes, stage, authorizers):
    """The compact view diff mode shows of what exists."""
    if api is None:
        return {}
    if stage is not None:
        stage = {"name": stage["StageName"], "auto_deploy": bool(stage.get("AutoDeploy"))}
    return {
        "description": api.get("Description") or "",
        "route_selection_expression": api.get("RouteSelectionExpression"),
        "integration": integration.get("IntegrationUri") if integration else None,
        "routes": sorted(route["RouteKey"] for route in routes),
        "connect_authorizer": authorizer_summary(authorizer_of(connect_route(routes), authorizers)),
        "stage": stage,
        "tags": api.get("Tags") or {},
    }


def wanted_summary(before, params, uri):
    """The same view of what the arguments ask for."""
    tags = before.get("tags", {})
    if params["tags"] is not None:
        to_set, to_unset = compare_aws_tags(tags, params["tags"], params["purge_tags"])
        tags = {key: value for key, value in {**tags, **to_set}.items() if key not in to_unset}
    kept = [] if params["purge_routes"] else before.get("routes", [])
    description = params["description"]
    authorizer = before.get("connect_authorizer")
    if params["connect_authorizer"] is not None:
        authorizer = authorizer_summary(wanted_authorizer(params["connect_authorizer"], uri))
    return {
        "description": before.get("description", "") if description is None else description,
        "route_selection_expression": params["route_selection_expression"],
        "integration": uri,
        "routes": sorted(set(params["routes"]) | set(kept)),
        "connect_authorizer": authorizer,
        "stage": {"name": params["stage"], "auto_deploy": params["auto_deploy"]},
        "tags": tags,
    }


def ensure_api(gateway, api, params, partition):
    wanted = {"RouteSelectionExpression": params["route_selection_expression"]}
    if params["description"] is not None:
        wanted["Description"] = params["description"]
    if api is None:
        tags = {} if params["tags"] is None else {"Tags": params["tags"]}
        return gateway.write(
            "create_api", Name=params["name"], ProtocolType="WEBSOCKET", **wanted, **tags
        )
    stale = {key: value for key, value in wanted.items() if (api.get(key) or "") != value}
    if stale:
        gateway.write("update_api", ApiId=api["ApiId"], **stale)
    if params["tags"] is not None:
        ensure_tags(gateway, api, partition, params["tags"], params["purge_tags"])
    return api


def ensure_tags(gateway, api, partition, tags, purge):
    arn = "arn:%s:apigateway:%s::/apis/%s" % (partition, gateway.module.region, api["ApiId"])
    to_set, to_unset = compare_aws_tags(api.get("Tags") or {}, tags, purge)
    if to_set:
        gateway.write("tag_resource", ResourceArn=arn, Tags=to_set)
    if to_unset:
        gateway.write("untag_resource", ResourceArn=arn, TagKeys=to_unset)


def ensure_integration(gateway, api_id, current, uri):
    # A Lambda proxy integration is always invoked with POST, whatever the client sent.
    wanted = {"IntegrationType": "AWS_PROXY", "IntegrationMethod": "POST", "IntegrationUri": uri}
    if current is None:
        return gateway.write("create_integration", ApiId=api_id, **wanted).get("IntegrationId")
    integration_id = current["IntegrationId"]
    if any(current.get(key) != value for key, value in wanted.items()):
        gateway.write("update_integration", ApiId=api_id, IntegrationId=integration_id, **wanted)
    return integration_id


def wanted_authorizer(spec, uri):
    """The authorizer spec asks for, in the form GetAuthorizers answers with."""
    return {
        "Name": spec["name"],
        "AuthorizerType": "REQUEST",
        "AuthorizerUri": uri,
        "IdentitySource": spec["identity_source"],
    }


def ensure_authorizer(gateway, api_id, current, spec, uri):
    wanted = wanted_authorizer(spec, uri)
    if current is None:
        return gateway.write("create_authorizer", ApiId=api_id, **wanted).get("AuthorizerId")
    authorizer_id = current["AuthorizerId"]
    if any(current.get(key) != value for key, value in wanted.items()):
        gateway.write("update_authorizer", ApiId=api_id, AuthorizerId=authorizer_id, **wanted)
    return authorizer_id


def ensure_routes(gateway, api_id, routes, params, target, *, authorizer_id):
    """The routes, each on target; $connect also behind authorizer_id when there is one."""
    existing = {route["RouteKey"]: route for route in routes}
    route_ids = {}
    for key in params["routes"]:
        route = existing.get(key)
        wanted = {"Target": target}
        if key == "$connect" and params["connect_authorizer"] is not None:
            wanted.update(AuthorizationType="CUSTOM", AuthorizerId=authorizer_id)
        if route is None:
            created = gateway.write("create_route", ApiId=api_id, RouteKey=key, **wanted)
            route_ids[key] = created.get("RouteId")
            continue
        if any(route.get(name) != value for name, value in wanted.items()):
            gateway.write("update_route", ApiId=api_id, RouteId=route["RouteId"], **wanted)
        route_ids[key] = route["RouteId"]
    for key, route in existing.items():
        if key in route_ids:
            continue
        if params["purge_routes"]:
            gateway.write("delete_route", ApiId=api_id, RouteId=route["RouteId"])
        else:
            route_ids[key] = route["RouteId"]
    return route_ids


def ensure_stage(gateway, api_id, current, name, auto_deploy):
    if current is None:
        gateway.write("create_stage", ApiId=api_id, StageName=name, AutoDeploy=auto_deploy)
    elif bool(current.get("AutoDeploy")) != auto_deploy:
        gateway.write("update_stage", ApiId=api_id, StageName=name, AutoDeploy=auto_deploy)
    # Without auto-deploy nothing reaches clients until a deployment; tags are not deployed.
    if not auto_deploy and any(op not in TAG_WRITES for op in gateway.changes):
        gateway.write("create_deployment", ApiId=api_id, StageName=name)


def websocket_url(endpoint, stage):
    """wss://host/stage, whatever scheme the endpoint has (moto says https://, AWS wss://)."""
    return "wss://%s/%s" % (urlparse(endpoint).netloc, stage) if endpoint else None


def ensure_present(module, gateway):
    params = module.params
    match = LAMBDA_ARN.match(params["lambda_arn"])
    if not match:
        module.fail_json(
            msg="lambda_arn %s is not an unqualified Lambda function ARN; pass "
            "arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME without a version or alias suffix"
            % params["lambda_arn"]
        )
    partition = match.group(1)
    uri = "arn:%s:apigateway:%s:lambda:path/2015-03-31/functions/%s/invocations"
    uri %= (partition, module.region, params["lambda_arn"])
    api = find_api(gateway, params["name"])
    integrations, routes, stages, authorizers = read_parts(gateway, api and api["ApiId"])
    integration = pick_integration(integrations, uri)
    stage = pick_stage(stages, params["stage"])
    before = summarize(api, integration, routes, stage, authorizers)

    api = ensure_api(gateway, api, params, partition)
    api_id = api.get("ApiId")
    integration_id = ensure_integration(gateway, api_id, integration, uri)
    target = "integrations/%s" % integration_id
    spec = params["connect_authorizer"]
    if spec is None:  # left as it is
        authorizer = authorizer_of(connect_route(routes), authorizers)
        authorizer_id = authorizer and authorizer["AuthorizerId"]
    else:
        current = pick_authorizer(authorizers, spec["name"], connect_route(routes))
        authorizer_id = ensure_authorizer(gateway, api_id, current, spec, uri)
    route_ids = ensure_routes(gateway, api_id, routes, params, target, authorizer_id=authorizer_id)
    ensure_stage(gateway, api_id, stage, params["stage"], params["auto_deploy"])

    result = {
        "changed": bool(gateway.changes),
        "api_id": api_id,
        "api_endpoint": api.get("ApiEndpoint"),
        "url": websocket_url(api.get("ApiEndpoint"), params["stage"]),
        "integration_id": integration_id,
        "route_ids": route_ids,
        "authorizer_id": authorizer_id,
        "stage": params["stage"],
    }
    if module._diff:
        result["diff"] = {"before": before, "after": wanted_summary(before, params, uri)}
    return result


def ensure_absent(module, gateway):
    api = find_api(gateway, module.params["name"])
    result = {"changed": api is not None, "api_id": api and api["ApiId"]}
    if module._diff:
        integrations, routes, stages, authorizers = read_parts(gateway, api and api["ApiId"])
        stage = pick_stage(stages, module.params["stage"])
        before = summarize(api, pick_integration(integrations, None), routes, stage, authorizers)
        result["diff"] = {"before": before, "after": {}}
    if api is not None:
        gateway.write("delete_api", ApiId=api["ApiId"])
    return result


def main():
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "description": {"type": "str"},
            "route_selection_expression": {"type": "str", "default": "$request.body.action"},
            "lambda_arn": {"type": "str"},
            "routes": {"type": "list", "elements": "str"},
            "purge_routes": {"type": "bool", "default": True},
            "connect_authorizer": {
                "type": "dict",
                "options": {
                    "name": {"type": "str", "required": True},
                    "identity_source": {
                        "type": "list",
                        "elements": "str",
                        "default": ["route.request.querystring.token"],
                    },
                },
            },
            "stage": {"type": "str", "default": "prod"},
            "auto_deploy": {"type": "bool", "default": True},
            "tags": {"type": "dict", "aliases": ["resource_tags"]},
            "purge_tags": {"type": "bool", "default": True},
        },
        required_if=[("state", "present", ["lambda_arn", "routes"])],
        supports_check_mode=True,
    )
    if not module.region:
        module.fail_json(msg="No AWS region is set; pass region or set AWS_REGION, and run again")
    params = module.params
    params["routes"] = list(dict.fromkeys(params["routes"] or []))
    wants_authorizer = params["state"] == "present" and params["connect_authorizer"] is not None
    if wants_authorizer and "$connect" not in params["routes"]:
        module.fail_json(
            msg="connect_authorizer guards the $connect route, which routes does not list; add "
            "$connect to routes or leave connect_authorizer out"
        )
    if params["tags"] is not None:  # AWS keeps tag values as strings; YAML may give numbers
        params["tags"] = {key: str(value) for key, value in params["tags"].items()}
    gateway = Gateway(module)
    if params["state"] == "present":
        module.exit_json(**ensure_present(module, gateway))
    module.exit_json(**ensure_absent(module, gateway))


if __name__ == "__main__":
    main()
