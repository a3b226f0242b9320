#!/usr/bin/python
"""An API Gateway HTTP API that hands every request to one Lambda function (browser pages)."""

DOCUMENTATION = r"""
---
module: homelab_p2p_http_api
short_description: Manage an API Gateway HTTP API that hands every request to one Lambda function
description:
  - Creates, updates or deletes an API Gateway (v2) HTTP API, found by O(name), whose only route
    V($default) goes to one Lambda proxy integration (payload format 2.0), served by the
    auto-deployed, throttled V($default) stage. Neither amazon.aws nor community.aws has an API
    Gateway v2 module.
  - A run that finds everything as asked makes no write call. Other integrations of the API are
    left alone; the Lambda proxy integration found is updated, never duplicated. Every route
    other than V($default) is deleted, since the API exists only to hand requests to the
    function. The API gets no CORS configuration.
  - It does not let API Gateway invoke the function; use M(amazon.aws.lambda_policy) for that,
    with a source ARN of C(arn:aws:execute-api:REGION:ACCOUNT:API_ID/*).
options:
  name:
    description:
      - Name of the API. At most one HTTP API of this name may exist in the region; a WebSocket
        API of the same name is another API, and left alone.
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
  lambda_arn:
    description:
      - Unqualified ARN of the Lambda function every request invokes; required when
        O(state=present).
      - A version or alias suffix is refused because it would pin the API to that version.
    type: str
  throttling_burst_limit:
    description:
      - How many requests above O(throttling_rate_limit) the V($default) stage lets through at
        once before it answers HTTP 429.
    type: int
    default: 40
  throttling_rate_limit:
    description: Requests per second the V($default) stage lets through, in the steady state.
    type: float
    default: 20.0
notes:
  - Supports check mode and diff mode.
  - IAM authorizes API Gateway management calls by HTTP verb and path. The deploying identity needs
    C(apigateway:GET), C(POST), C(PATCH) and C(DELETE) on C(arn:aws:apigateway:REGION::/apis) and
    C(.../apis/*), and C(apigateway:POST) and C(DELETE) on C(.../tags/*) to change tags.
  - moto 5.2 does not implement UpdateStage; against it, a V($default) stage whose throttling or
    auto-deploy differs cannot be repaired.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
author: homelab-p2p-bridge developers
"""

EXAMPLES = r"""
- name: The proxy console's pages, served by the signaling function
  homelab_p2p_http_api:
    name: homelab-p2p-console
    description: homelab-p2p-bridge proxy console
    lambda_arn: arn:aws:lambda:us-east-1:123456789012:function:homelab-p2p-signaling
    throttling_burst_limit: 40
    throttling_rate_limit: 20
    tags:
      project: homelab-p2p-bridge
  register: console  # console.url is the pages' origin, https://API_ID.execute-api...

- name: Remove the API
  homelab_p2p_http_api:
    name: homelab-p2p-console
    state: absent
"""

RETURN = r"""
api_id:
  description: Id of the API; null when there is none, or in check mode before it is created.
  type: str
  returned: always
  sample: a1b2c3d4e5
api_endpoint:
  description: Endpoint of the API as AWS reports it.
  type: str
  returned: when O(state=present)
  sample: https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com
url:
  description:
    - The origin browsers ask for pages at (the V($default) stage has no path), C(https://)
      and no trailing slash; null in check mode before the API is created.
  type: str
  returned: when O(state=present)
  sample: https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com
integration_id:
  description: Id of the Lambda proxy integration; null in check mode before it is created.
  type: str
  returned: when O(state=present)
  sample: k7q2x9z
route_id:
  description: Id of the V($default) route; null in check mode before it is created.
  type: str
  returned: when O(state=present)
  sample: r1a2b3c
stage:
  description: Name of the stage, always V($default).
  type: str
  returned: when O(state=present)
  sample: $default
diff:
  description: In diff mode, the API before and after (description, integration URI and payload
    format version, sorted route keys, stage with auto_deploy and throttling, tags).
  type: dict
  returned: in diff mode
"""

from urllib.parse import urlparse

from ansible.module_utils.homelab_p2p_apigateway import (
    Gateway,
    ensure_api,
    ensure_integration,
    find_api,
    lambda_invocation,
    pick_integration,
    pick_stage,
    read_parts,
    tags_after,
)
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# What the module reads of an API, in this order.
PARTS = ("get_integrations", "get_routes", "get_stages")
ROUTE = "$default"  # every request, whatever its method and path
STAGE = "$default"  # served at the endpoint itself, no stage name in the path
PAYLOAD_FORMAT = "2.0"


def wanted_throttling(params):
    """The stage's DefaultRouteSettings the arguments ask for, as GetStages answers them."""
    return {
        "ThrottlingBurstLimit": params["throttling_burst_limit"],
        "ThrottlingRateLimit": float(params["throttling_rate_limit"]),
    }


def stage_summary(stage):
    if stage is None:
        return None
    settings = stage.get("DefaultRouteSettings") or {}
    return {
        "name": stage["StageName"],
        "auto_deploy": bool(stage.get("AutoDeploy")),
        "throttling_burst_limit": settings.get("ThrottlingBurstLimit"),
        "throttling_rate_limit": settings.get("ThrottlingRateLimit"),
    }


def summarize(api, integration, routes, stage):
    """The compact view diff mode shows of what exists."""
    if api is None:
        return {}
    if integration is not None:
        integration = {
            "uri": integration.get("IntegrationUri"),
            "payload_format_version": integration.get("PayloadFormatVersion"),
        }
    return {
        "description": api.get("Description") or "",
        "integration": integration,
        "routes": sorted(route["RouteKey"] for route in routes),
        "stage": stage_summary(stage),
        "tags": api.get("Tags") or {},
    }


def wanted_summary(before, params, uri):
    """The same view of what the arguments ask for."""
    description = params["description"]
    stage = {
        "StageName": STAGE,
        "AutoDeploy": True,
        "DefaultRouteSettings": wanted_throttling(params),
    }
    return {
        "description": before.get("description", "") if description is None else description,
        "integration": {"uri": uri, "payload_format_version": PAYLOAD_FORMAT},
        "routes": [ROUTE],
        "stage": stage_summary(stage),
        "tags": tags_after(before.get("tags", {}), params["tags"], params["purge_tags"]),
    }


def ensure_route(gateway, api_id, routes, target):
    """The $default route on target, and no other route; returns its id (None in check mode
    before it is created)."""
    for route in routes:
        if route["RouteKey"] != ROUTE:
            gateway.write("delete_route", ApiId=api_id, RouteId=route["RouteId"])
    route = next((route for route in routes if route["RouteKey"] == ROUTE), None)
    if route is None:
        created = gateway.write("create_route", ApiId=api_id, RouteKey=ROUTE, Target=target)
        return created.get("RouteId")
    if route.get("Target") != target:
        gateway.write("update_route", ApiId=api_id, RouteId=route["RouteId"], Target=target)
    return route["RouteId"]


def ensure_stage(gateway, api_id, current, params):
    throttling = wanted_throttling(params)
    if current is None:
        gateway.write(
            "create_stage",
            ApiId=api_id,
            StageName=STAGE,
            AutoDeploy=True,
            DefaultRouteSettings=throttling,
        )
        return
    settings = current.get("DefaultRouteSettings") or {}
    stale = any(settings.get(key) != value for key, value in throttling.items())
    if stale or not current.get("AutoDeploy"):
        # The other settings (detailed metrics) stay as they are.
        gateway.write(
            "update_stage",
            ApiId=api_id,
            StageName=STAGE,
            AutoDeploy=True,
            DefaultRouteSettings={**settings, **throttling},
        )


def https_url(endpoint):
    """https://host, whatever the endpoint's form; None before the API exists."""
    return "https://%s" % urlparse(endpoint).netloc if endpoint else None


def ensure_present(module, gateway):
    params = module.params
    partition, uri = lambda_invocation(module, params["lambda_arn"])
    api = find_api(gateway, params["name"], "HTTP")
    integrations, routes, stages = read_parts(gateway, api and api["ApiId"], PARTS)
    integration = pick_integration(integrations, uri)
    stage = pick_stage(stages, STAGE)
    before = summarize(api, integration, routes, stage)

    api = ensure_api(gateway, api, params, partition, protocol_type="HTTP", wanted={})
    api_id = api.get("ApiId")
    integration_id = ensure_integration(
        gateway, api_id, integration, uri, payload_format_version=PAYLOAD_FORMAT
    )
    route_id = ensure_route(gateway, api_id, routes, "integrations/%s" % integration_id)
    ensure_stage(gateway, api_id, stage, params)

    result = {
        "changed": bool(gateway.changes),
        "api_id": api_id,
        "api_endpoint": api.get("ApiEndpoint"),
        "url": https_url(api.get("ApiEndpoint")),
        "integration_id": integration_id,
        "route_id": route_id,
        "stage": STAGE,
    }
    if module._diff:
        result["diff"] = {"before": before, "after": wanted_summary(before, params, uri)}
    return result


def ensure_absent(module, gateway):
    api = find_api(gateway, module.params["name"], "HTTP")
    result = {"changed": api is not None, "api_id": api and api["ApiId"]}
    if module._diff:
        integrations, routes, stages = read_parts(gateway, api and api["ApiId"], PARTS)
        integration = pick_integration(integrations, None)
        before = summarize(api, integration, routes, pick_stage(stages, STAGE))
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
            "lambda_arn": {"type": "str"},
            "throttling_burst_limit": {"type": "int", "default": 40},
            "throttling_rate_limit": {"type": "float", "default": 20.0},
            "tags": {"type": "dict", "aliases": ["resource_tags"]},
            "purge_tags": {"type": "bool", "default": True},
        },
        required_if=[("state", "present", ["lambda_arn"])],
        supports_check_mode=True,
    )
    if not module.region:
        module.fail_json(msg="No AWS region is set; pass region or set AWS_REGION, and run again")
    params = module.params
    if params["tags"] is not None:  # AWS keeps tag values as strings; YAML may give numbers
        params["tags"] = {key: str(value) for key, value in params["tags"].items()}
    gateway = Gateway(module)
    if params["state"] == "present":
        module.exit_json(**ensure_present(module, gateway))
    module.exit_json(**ensure_absent(module, gateway))


if __name__ == "__main__":
    main()
