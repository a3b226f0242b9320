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

from urllib.parse import urlparse

from ansible.module_utils.homelab_p2p_apigateway import (
    TAG_WRITES,
    Gateway,
    ensure_api,
    ensure_integration,
    ensure_part,
    find_api,
    lambda_invocation,
    pick_integration,
    pick_stage,
    read_parts,
    tags_after,
)
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# What the module reads of an API, in this order.
PARTS = ("get_integrations", "get_routes", "get_stages", "get_authorizers")


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
    tags = tags_after(before.get("tags", {}), params["tags"], params["purge_tags"])
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


def wanted_authorizer(spec, uri):
    """The authorizer spec asks for, in the form GetAuthorizers answers with."""
    return {
        "Name": spec["name"],
        "AuthorizerType": "REQUEST",
        "AuthorizerUri": uri,
        "IdentitySource": spec["identity_source"],
    }


def ensure_authorizer(gateway, api_id, current, spec, uri):
    return ensure_part(gateway, api_id, "authorizer", current, wanted_authorizer(spec, uri))


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
    partition, uri = lambda_invocation(module, params["lambda_arn"])
    api = find_api(gateway, params["name"], "WEBSOCKET")
    integrations, routes, stages, authorizers = read_parts(gateway, api and api["ApiId"], PARTS)
    integration = pick_integration(integrations, uri)
    stage = pick_stage(stages, params["stage"])
    before = summarize(api, integration, routes, stage, authorizers)

    wanted = {"RouteSelectionExpression": params["route_selection_expression"]}
    api = ensure_api(gateway, api, params, partition, protocol_type="WEBSOCKET", wanted=wanted)
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
    api = find_api(gateway, module.params["name"], "WEBSOCKET")
    result = {"changed": api is not None, "api_id": api and api["ApiId"]}
    if module._diff:
        parts = read_parts(gateway, api and api["ApiId"], PARTS)
        integrations, routes, stages, authorizers = parts
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
