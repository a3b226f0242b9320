"""What the signaling_aws role's API Gateway v2 modules share (WebSocket API and HTTP API).

Ansible ships this file with each module of the role that imports it, as
``from ansible.module_utils.homelab_p2p_apigateway import ...``, the way amazon.aws ships its
plugins/module_utils with its modules.
"""

import contextlib
import re

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

LAMBDA_ARN = re.compile(r"^arn:(aws[a-z-]*):lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+$")
# IAM knows API Gateway management calls by HTTP verb and path, not by operation name.
VERBS = {"get": "GET", "create": "POST", "update": "PATCH", "delete": "DELETE", "tag": "POST"}
TAG_WRITES = ("tag_resource", "untag_resource")
# ProtocolType -> how a message names that kind of API.
KINDS = {"WEBSOCKET": "WebSocket", "HTTP": "HTTP"}


def permission(operation, region):
    """The IAM permission an apigatewayv2 operation needs, e.g. apigateway:POST on .../apis."""
    verb = VERBS.get(operation.split("_")[0], "DELETE")  # untag_resource is a DELETE
    path = "/apis" if operation in ("get_apis", "create_api") else "/apis/*"
    path = "/tags/*" if operation in TAG_WRITES else path
    return "apigateway:%s on arn:aws:apigateway:%s::%s" % (verb, region, path)


def lambda_invocation(module, lambda_arn):
    """(partition, URI by which API Gateway invokes the function); fails the module when
    lambda_arn is not an unqualified Lambda function ARN."""
    match = LAMBDA_ARN.match(lambda_arn)
    if not match:
        module.fail_json(
            msg="lambda_arn %s is not an unqualified Lambda function ARN; pass "
            "arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME without a version or alias suffix"
            % lambda_arn
        )
    partition = match.group(1)
    uri = "arn:%s:apigateway:%s:lambda:path/2015-03-31/functions/%s/invocations"
    return partition, uri % (partition, module.region, lambda_arn)


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


def find_api(gateway, name, protocol_type):
    """The API of that name and protocol type ("WEBSOCKET" or "HTTP"), or None; fails the module
    when the name picks more than one."""
    apis = gateway.items("get_apis")
    apis = [api for api in apis if (api["Name"], api["ProtocolType"]) == (name, protocol_type)]
    if len(apis) > 1:
        gateway.module.fail_json(
            msg="There are %d %s APIs named %s (%s); delete or rename all but one so the "
            "name picks a single API, then run again"
            % (
                len(apis),
                KINDS.get(protocol_type, protocol_type),
                name,
                ", ".join(sorted(api["ApiId"] for api in apis)),
            )
        )
    return apis[0] if apis else None


def read_parts(gateway, api_id, operations):
    """One list per Get* listing in operations (get_integrations, get_routes...) of the API;
    empty lists while it is still to be created."""
    if api_id is None:
        return tuple([] for _ in operations)
    return tuple(gateway.items(operation, ApiId=api_id) for operation in operations)


def pick_integration(integrations, uri):
    """The Lambda proxy integration to keep: the one already on uri, else any other one."""
    proxies = [i for i in integrations if i.get("IntegrationType") == "AWS_PROXY"]
    matching = [i for i in proxies if i.get("IntegrationUri") == uri]
    return (matching or proxies or [None])[0]


def pick_stage(stages, name):
    return next((stage for stage in stages if stage.get("StageName") == name), None)


def tags_after(tags, wanted, purge):
    """The tags an API with these tags has once ensure_tags made them wanted (None: kept)."""
    if wanted is None:
        return tags
    to_set, to_unset = compare_aws_tags(tags, wanted, purge)
    return {key: value for key, value in {**tags, **to_set}.items() if key not in to_unset}


def ensure_tags(gateway, api, partition, tags, purge):
    arn = "arn:%s:apigateway:%s::/apis/%s" % (partition, gateway.module.region, api["ApiId"])
    to_set, to_unset = compare_aws_tags(api.get("Tags") or {}, tags, purge)
    if to_set:
        gateway.write("tag_resource", ResourceArn=arn, Tags=to_set)
    if to_unset:
        gateway.write("untag_resource", ResourceArn=arn, TagKeys=to_unset)


def ensure_integration(gateway, api_id, current, uri, payload_format_version=None):
    """The Lambda proxy integration on uri, created or updated; returns its id (None in check
    mode before it is created). An HTTP API needs payload_format_version; a WebSocket API's
    integration is left with the format it has."""
    # A Lambda proxy integration is always invoked with POST, whatever the client sent.
    wanted = {"IntegrationType": "AWS_PROXY", "IntegrationMethod": "POST", "IntegrationUri": uri}
    if payload_format_version is not None:
        wanted["PayloadFormatVersion"] = payload_format_version
    return ensure_part(gateway, api_id, "integration", current, wanted)


def ensure_part(gateway, api_id, kind, current, wanted):
    """A part of the API (an ``integration``, an ``authorizer``) with the settings in wanted:
    created, or updated where one differs; returns its id (None in check mode before it is
    created)."""
    id_key = "%sId" % kind.capitalize()
    if current is None:
        return gateway.write("create_%s" % kind, ApiId=api_id, **wanted).get(id_key)
    part_id = current[id_key]
    if any(current.get(key) != value for key, value in wanted.items()):
        gateway.write("update_%s" % kind, ApiId=api_id, **{id_key: part_id}, **wanted)
    return part_id


def ensure_api(gateway, api, params, partition, *, protocol_type, wanted):
    """The API of params["name"] with the settings in wanted (and params' description and
    tags); returns it as found, or as created (empty in check mode)."""
    wanted = dict(wanted)
    if params["description"] is not None:
        wanted["Description"] = params["description"]
    if api is None:
        tags = {} if params["tags"] is None else {"Tags": params["tags"]}
        return gateway.write(
            "create_api", Name=params["name"], ProtocolType=protocol_type, **wanted, **tags
        )
    stale = {key: value for key, value in wanted.items() if (api.get(key) or "") != value}
    if stale:
        gateway.write("update_api", ApiId=api["ApiId"], **stale)
    if params["tags"] is not None:
        ensure_tags(gateway, api, partition, params["tags"], params["purge_tags"])
    return api
