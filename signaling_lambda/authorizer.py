"""The token authorizer of the ``$connect`` route, and the claims it gives each connection.

API Gateway runs a REQUEST authorizer once per connection, at ``$connect``, with the token
from the query string; the context it returns is in ``requestContext.authorizer`` of every
later event of that connection. So the handler knows, for each message, who sent it
(role, name, the homelabs a client may reach, when its token expires) without a lookup.
The local gateway does the same with the same code: it calls the handler with the
authorizer's event first and keeps the context for the connection.
"""

from collections.abc import Mapping
from typing import Any

from p2p_protocol.tokens import ROLES, TokenClaims

AUTHORIZER_EVENT_TYPE = "REQUEST"


def is_authorizer_request(event: object) -> bool:
    return (
        isinstance(event, dict)
        and event.get("type") == AUTHORIZER_EVENT_TYPE
        and isinstance(event.get("methodArn"), str)
    )


def token_of(event: dict[str, Any]) -> object:
    query = event.get("queryStringParameters")
    return query.get("token") if isinstance(query, dict) else None


def _policy(effect: str, principal: str, method_arn: str) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}
            ],
        },
    }


def allow(claims: TokenClaims | None, method_arn: str) -> dict[str, Any]:
    """Let the connection in, with its claims as context (None: authentication is off)."""
    if claims is None:
        return {**_policy("Allow", "anonymous", method_arn), "context": {}}
    principal = f"{claims.role}:{claims.name}"
    context = {
        "role": claims.role,
        "name": claims.name,
        "homelabs": ",".join(claims.homelabs),
        "expiresAt": claims.expires_at,
        "credentialId": claims.credential_id,
    }
    return {**_policy("Allow", principal, method_arn), "context": context}


def deny(method_arn: str) -> dict[str, Any]:
    return _policy("Deny", "unauthorized", method_arn)


def allowed_context(response: object) -> dict[str, Any] | None:
    """What API Gateway puts in ``requestContext.authorizer``: None when the answer is not
    an Allow (a Deny, or nothing usable)."""
    if not isinstance(response, dict):
        return None
    try:
        statements = response["policyDocument"]["Statement"]
        allowed = all(statement["Effect"] == "Allow" for statement in statements)
    except (KeyError, TypeError):
        return None
    context = response.get("context") or {}
    if not allowed or not statements or not isinstance(context, dict):
        return None
    return {**context, "principalId": str(response.get("principalId", ""))}


def claims_from_context(context: Mapping[str, Any] | None) -> TokenClaims | None:
    """The claims the authorizer gave a connection; None if it gave none."""
    if not context:
        return None
    role, name, homelabs, expires_at, credential_id = (
        context.get(key) for key in ("role", "name", "homelabs", "expiresAt", "credentialId")
    )
    if role not in ROLES or not isinstance(name, str) or not isinstance(homelabs, str):
        return None
    # API Gateway may hand a context number on as a string: take either.
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | str):
        return None
    try:
        expiry = int(expires_at)
    except ValueError:
        return None
    assert isinstance(role, str)
    return TokenClaims(
        role=role,
        name=name,
        expires_at=expiry,
        homelabs=tuple(h for h in homelabs.split(",") if h),
        credential_id=credential_id if isinstance(credential_id, str) else "",
    )
