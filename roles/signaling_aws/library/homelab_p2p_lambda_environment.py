#!/usr/bin/python
"""Set some of a Lambda function's environment variables, keeping the others as they are."""

DOCUMENTATION = r"""
---
module: homelab_p2p_lambda_environment
short_description: Set some environment variables of a Lambda function, keep the rest
description:
  - Reads the function's configuration and calls C(UpdateFunctionConfiguration) with its
    environment merged with I(variables) only when a value differs, so the variables it does not
    name (the signing secret, a C(lambda_env) registration in C(LAPTOP_ID)) stay untouched,
    unlike amazon.aws.lambda, which needs the whole configuration passed again.
  - It does not wait for the update to finish; poll C(LastUpdateStatus) afterwards (see
    homelab_p2p_signaling_info).
options:
  function_name:
    description: The function's name.
    type: str
    required: true
  variables:
    description: The variables to set, name to value.
    type: dict
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: homelab-p2p-bridge developers
"""

EXAMPLES = r"""
- name: Refuse the tokens of two revoked credentials
  homelab_p2p_lambda_environment:
    function_name: homelab-p2p-signaling
    variables:
      SIGNALING_REVOKED: 0123456789abcdef,fedcba9876543210
"""

RETURN = r"""
updated:
  description: The names of the variables whose value changed (values are not returned).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.homelab_p2p_aws import (
    aws_call,
    aws_client,
    aws_module,
    deployed_function,
    same_revision,
)


def main():
    module = aws_module(
        dict(
            function_name=dict(type="str", required=True),
            variables=dict(type="dict", required=True),
        )
    )
    name = module.params["function_name"]
    wanted = {key: str(value) for key, value in module.params["variables"].items()}

    client = aws_client(module, "lambda")
    current = deployed_function(module, client, name)
    variables = dict((current.get("Environment") or {}).get("Variables") or {})
    updated = sorted(key for key, value in wanted.items() if variables.get(key) != value)
    if not updated:
        module.exit_json(changed=False, updated=[])
    if module.check_mode:
        module.exit_json(changed=True, updated=updated)
    variables.update(wanted)
    aws_call(
        module,
        "Could not update the environment of %s" % name,
        client.update_function_configuration,
        FunctionName=name,
        Environment={"Variables": variables},
        aws_retry=True,
        **same_revision(current),
    )
    module.exit_json(changed=True, updated=updated)


if __name__ == "__main__":
    main()
