#!/usr/bin/python
"""Update a Lambda function's code, and nothing else, when the zip differs from what runs."""

DOCUMENTATION = r"""
---
module: homelab_p2p_lambda_code
short_description: Update a Lambda function's code only, when its sha256 changed
description:
  - Compares the zip's sha256 with the function's C(CodeSha256) and calls C(UpdateFunctionCode)
    with C(Publish=true) only when they differ, so a new version is published exactly when the
    code changed. The configuration (timeout, memory, environment, role) is left as it is, unlike
    amazon.aws.lambda, which needs all of it passed again.
  - It does not wait for the update to finish; poll C(LastUpdateStatus) afterwards (see
    homelab_p2p_signaling_info).
options:
  function_name:
    description: The function's name.
    type: str
    required: true
  zip_file:
    description: Path of the deployment zip on the host the module runs on.
    type: path
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: homelab-p2p-bridge developers
"""

EXAMPLES = r"""
- name: Update the code
  homelab_p2p_lambda_code:
    function_name: homelab-p2p-signaling
    zip_file: dist/signaling_lambda.zip
"""

RETURN = r"""
code_sha256:
  description: The CodeSha256 of the zip (what the function runs after a successful update).
  type: str
  returned: always
previous_code_sha256:
  description: The CodeSha256 the function had before.
  type: str
  returned: always
version:
  description: The version published by the update; absent when nothing changed.
  type: str
  returned: changed
"""

import base64
import hashlib

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
            zip_file=dict(type="path", required=True),
        )
    )
    name = module.params["function_name"]
    try:
        with open(module.params["zip_file"], "rb") as archive:
            code = archive.read()
    except OSError as e:
        module.fail_json(msg="Cannot read the zip %s: %s" % (module.params["zip_file"], e.strerror))
    new_sha = base64.b64encode(hashlib.sha256(code).digest()).decode()

    client = aws_client(module, "lambda")
    current = deployed_function(module, client, name)

    result = dict(code_sha256=new_sha, previous_code_sha256=current["CodeSha256"])
    if current["CodeSha256"] == new_sha:
        module.exit_json(changed=False, **result)
    if module.check_mode:
        module.exit_json(changed=True, **result)
    updated = aws_call(
        module,
        "Could not update the code of %s" % name,
        client.update_function_code,
        FunctionName=name,
        ZipFile=code,
        Publish=True,
        aws_retry=True,
        **same_revision(current),
    )
    module.exit_json(changed=True, version=updated.get("Version"), **result)


if __name__ == "__main__":
    main()
