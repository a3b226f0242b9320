#!/usr/bin/python
"""The signaling function's recent CloudWatch log lines, for playbooks/diagnose.yml."""

DOCUMENTATION = r"""
---
module: homelab_p2p_log_events
short_description: Read a log group's lines of the last minutes
description:
  - Reads, never changes. A log group that does not exist gives no lines and says so.
options:
  log_group_name:
    description: The log group, such as /aws/lambda/homelab-p2p-signaling.
    type: str
    required: true
  minutes:
    description: How far back to read.
    type: int
    default: 15
  limit:
    description: At most this many lines, the newest.
    type: int
    default: 2000
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: homelab-p2p-bridge developers
"""

EXAMPLES = r"""
- name: The function's lines of the last 15 minutes
  homelab_p2p_log_events:
    log_group_name: /aws/lambda/homelab-p2p-signaling
  register: logs
"""

RETURN = r"""
lines:
  description: The messages, oldest first.
  type: list
  elements: str
  returned: always
found:
  description: Whether the log group exists.
  type: bool
  returned: always
"""

import time

from ansible.module_utils.homelab_p2p_aws import aws_call, aws_client, aws_module


def main():
    module = aws_module(
        dict(
            log_group_name=dict(type="str", required=True),
            minutes=dict(type="int", default=15),
            limit=dict(type="int", default=2000),
        )
    )
    params = module.params
    client = aws_client(module, "logs")
    start = int((time.time() - params["minutes"] * 60) * 1000)
    lines, token = [], {}
    while True:
        page = aws_call(
            module,
            "Could not read the log group %s" % params["log_group_name"],
            client.filter_log_events,
            logGroupName=params["log_group_name"],
            startTime=start,
            aws_retry=True,
            missing=True,
            **token,
        )
        if page is None:
            module.exit_json(changed=False, lines=[], found=False)
        lines.extend(event["message"].rstrip("\n") for event in page.get("events", []))
        if not page.get("nextToken") or len(lines) >= params["limit"]:
            break
        token = {"nextToken": page["nextToken"]}
    module.exit_json(changed=False, lines=lines[-params["limit"] :], found=True)


if __name__ == "__main__":
    main()
