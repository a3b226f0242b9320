"""Filters of the signaling_aws role: AWS regions known offline, and failures as one sentence.

{{ signaling_aws_region in ('apigatewayv2' | aws_service_regions) }}
{{ ansible_failed_result | aws_failure_sentence(ansible_failed_task.name, signaling_aws_region) }}
"""

import re

CREDENTIALS_HINT = (
    "export AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) for the identity "
    "that deploys, or run `aws configure`"
)
REJECTED_CREDENTIALS = (
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "AuthFailure",
)
EXPIRED = ("ExpiredToken", "ExpiredTokenException", "RequestExpired")
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
ENDPOINT_URL = re.compile(r'"(https?://[^"]+)"')
DENIED_ACTION = re.compile(r"(\S+) is not authorized to perform: (\S+)")


def aws_service_regions(service):
    """Every region botocore's bundled endpoint data lists for ``service``, in all partitions."""
    import boto3  # noqa: PLC0415 - only plays that check a region pay for importing boto3

    session = boto3.session.Session()
    regions = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions(service, partition_name=partition))
    return sorted(regions)


def _error_code(result):
    error = result.get("error")
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"])
    return ""


def aws_failure_sentence(result, task, region):
    """One sentence that says what went wrong in ``task`` and what to do about it."""
    what = task[0].lower() + task[1:] if task else "an AWS call"
    if "censored" in result:
        return (
            "%s failed, and its output is hidden because it carries the signing secret: check "
            "that the deploying identity may manage Lambda functions and pass the function's "
            "role (docs/aws.md lists the permissions), then run again with -vvv" % what
        )
    message = str(result.get("msg", "")).strip()
    if result.get("rc") and (result.get("stderr") or result.get("stdout")):
        # A command on the controller: its own last line says more than "non-zero return code".
        message = str(result.get("stderr") or result.get("stdout")).strip().splitlines()[-1]
    code = _error_code(result)
    if "Unable to locate credentials" in message or "NoCredentialsError" in message:
        return "No AWS credentials were found while trying to %s: %s." % (what, CREDENTIALS_HINT)
    if code in REJECTED_CREDENTIALS:
        return "AWS rejected the credentials (%s) while trying to %s: %s." % (
            code,
            what,
            CREDENTIALS_HINT,
        )
    if code in EXPIRED:
        return "The AWS credentials have expired (%s): log in again (such as `aws sso login`)." % (
            code
        )
    if code in DENIED or "not authorized to perform" in message:
        denied = DENIED_ACTION.search(message)
        who, action = denied.groups() if denied else ("the deploying identity", "this call")
        return (
            "AWS denied %s to %s while trying to %s: grant that identity the permissions "
            "listed in docs/aws.md." % (action, who, what)
        )
    if "Could not connect to the endpoint URL" in message or "EndpointConnectionError" in message:
        url = ENDPOINT_URL.search(message)
        return (
            "AWS could not be reached at %s while trying to %s: check the network, "
            "signaling_aws_region (%s) and signaling_aws_endpoint_url."
            % (url.group(1) if url else "its endpoint", what, region)
        )
    detail = message.rstrip(".") or "no message"
    return "Could not %s: %s." % (what, detail)


class FilterModule:
    def filters(self):
        return {
            "aws_service_regions": aws_service_regions,
            "aws_failure_sentence": aws_failure_sentence,
        }
