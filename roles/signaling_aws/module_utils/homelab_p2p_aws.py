"""What the signaling_aws role's AWS modules share: the module, its clients and AWS calls.

Ansible ships this file with each module of the role that imports it, as
``from ansible.module_utils.homelab_p2p_aws import ...``, the way amazon.aws ships its
plugins/module_utils with its modules.
"""

import contextlib

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def aws_module(argument_spec):
    """An AnsibleAWSModule with these options (and the AWS ones) that supports check mode."""
    return AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)


def aws_client(module, service):
    """The service's client; a call given aws_retry=True is retried with jittered backoff."""
    return module.client(service, retry_decorator=AWSRetry.jittered_backoff())


def aws_call(module, msg, call, *args, missing=False, **kwargs):
    """What call(*args, **kwargs) returns; an AWS error fails the module with msg and AWS's reason.

    With missing=True, AWS's ResourceNotFoundException returns None instead.
    """
    try:
        return call(*args, **kwargs)
    except (ClientError, BotoCoreError) as e:
        code = e.response["Error"]["Code"] if isinstance(e, ClientError) else None
        if missing and code == "ResourceNotFoundException":
            return None
        module.fail_json_aws(e, msg=msg)


def deployed_function(module, client, name):
    """The function's configuration; fails the module when the function does not exist."""
    current = aws_call(
        module,
        "Could not read the function %s" % name,
        client.get_function_configuration,
        FunctionName=name,
        aws_retry=True,
        missing=True,
    )
    if current is None:
        module.fail_json(
            msg="The function %s does not exist; deploy it first with ansible-playbook site.yml"
            % name
        )
    return current


def same_revision(current):
    """Keyword arguments that make an update fail rather than overwrite one that got there
    first since ``current`` was read (moto has no RevisionId)."""
    return {"RevisionId": current["RevisionId"]} if current.get("RevisionId") else {}
