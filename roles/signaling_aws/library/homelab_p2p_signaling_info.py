#!/usr/bin/python
"""Read what is deployed of the signaling service: the function's configuration and the API."""

DOCUMENTATION = r"""
---
module: homelab_p2p_signaling_info
short_description: Read the signaling function's configuration and its WebSocket API
description:
  - Reads, never changes. A function or API that does not exist is returned as C(null), not as a
    failure (amazon.aws.lambda_info fails on a missing function in 10.x).
  - The function's C(SIGNALING_SECRET) variable is left out of the result, so the task needs no
    C(no_log); the secret's presence is reported as I(function.has_secret).
options:
  function_name:
    description: The function's name.
    type: str
    required: true
  api_name:
    description: The WebSocket API's name; leave out to skip the API.
    type: str
  stage:
    description: The stage the API's URL ends with.
    type: str
    default: prod
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: homelab-p2p-bridge developers
"""

EXAMPLES = r"""
- name: What is deployed?
  homelab_p2p_signaling_info:
    function_name: homelab-p2p-signaling
    api_name: homelab-p2p-signaling
  register: deployed
"""

RETURN = r"""
function:
  description: The function's configuration, or null when it does not exist.
  type: dict
  returned: always
  contains:
    arn: {description: The unqualified function ARN., type: str}
    code_sha256: {description: CodeSha256 (base64 of the zip's sha256)., type: str}
    version: {description: The newest published version., type: str}
    state: {description: State (Pending, Active, Failed...)., type: str}
    last_update_status: {description: LastUpdateStatus (InProgress, Successful, Failed)., type: str}
    last_update_status_reason: {description: Why the last update failed., type: str}
    runtime: {description: The runtime., type: str}
    handler: {description: The handler., type: str}
    role: {description: The execution role's ARN., type: str}
    timeout: {description: Timeout in seconds., type: int}
    memory_size: {description: Memory in MB., type: int}
    environment: {description: Environment variables without SIGNALING_SECRET., type: dict}
    has_secret: {description: Whether SIGNALING_SECRET is set., type: bool}
api:
  description: The WebSocket API, or null when there is none of that name.
  type: dict
  returned: always
  contains:
    api_id: {description: The API's id., type: str}
    url: {description: The wss URL clients and homelabs connect to., type: str}
"""

from ansible.module_utils.homelab_p2p_aws import aws_call, aws_client, aws_module

SECRET_VARIABLE = "SIGNALING_SECRET"


def read_function(module, client, name):
    failure = "Could not read the function %s" % name
    config = aws_call(
        module,
        failure,
        client.get_function_configuration,
        FunctionName=name,
        aws_retry=True,
        missing=True,
    )
    if config is None:
        return None
    versions = aws_call(
        module,
        failure,
        client.list_versions_by_function,
        FunctionName=name,
        aws_retry=True,
        missing=True,
    )
    if versions is None:
        return None
    variables = dict(config.get("Environment", {}).get("Variables", {}))
    has_secret = bool(variables.pop(SECRET_VARIABLE, ""))
    published = [v["Version"] for v in versions.get("Versions", []) if v["Version"] != "$LATEST"]
    return {
        "arn": config["FunctionArn"].split(":$LATEST")[0],
        "code_sha256": config.get("CodeSha256"),
        "version": max(published, key=int) if published else "$LATEST",
        "state": config.get("State", "Active"),
        "last_update_status": config.get("LastUpdateStatus", "Successful"),
        "last_update_status_reason": config.get("LastUpdateStatusReason", ""),
        "runtime": config.get("Runtime"),
        "handler": config.get("Handler"),
        "role": config.get("Role"),
        "timeout": config.get("Timeout"),
        "memory_size": config.get("MemorySize"),
        "environment": variables,
        "has_secret": has_secret,
    }


def read_api(module, client, name, stage):
    def list_apis():
        paginator = client.get_paginator("get_apis") if client.can_paginate("get_apis") else None
        return (
            [item for page in paginator.paginate() for item in page.get("Items", [])]
            if paginator
            else client.get_apis(aws_retry=True).get("Items", [])
        )

    items = aws_call(module, "Could not list the API Gateway APIs", list_apis)
    matches = [api for api in items if api["Name"] == name and api["ProtocolType"] == "WEBSOCKET"]
    if not matches:
        return None
    if len(matches) > 1:
        module.fail_json(
            msg="There are %d WebSocket APIs named %s (%s); delete or rename all but one so the "
            "name picks a single API, then run again"
            % (len(matches), name, ", ".join(sorted(api["ApiId"] for api in matches)))
        )
    api = matches[0]
    host = api["ApiEndpoint"].split("://", 1)[-1]
    return {"api_id": api["ApiId"], "url": "wss://%s/%s" % (host, stage)}


def main():
    module = aws_module(
        dict(
            function_name=dict(type="str", required=True),
            api_name=dict(type="str"),
            stage=dict(type="str", default="prod"),
        )
    )
    function = read_function(module, aws_client(module, "lambda"), module.params["function_name"])
    api = None
    if module.params["api_name"]:
        api = read_api(
            module,
            aws_client(module, "apigatewayv2"),
            module.params["api_name"],
            module.params["stage"],
        )
    module.exit_json(changed=False, function=function, api=api)


if __name__ == "__main__":
    main()
