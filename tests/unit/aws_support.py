"""Events and moto helpers for the handler's unit tests."""

import json
import uuid
from typing import Any
from urllib.parse import quote

from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

from lab import SECRET
from p2p_protocol.tokens import TokenError, verify_token
from signaling_lambda import authorizer

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's account
REGION = "us-east-1"
DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
ENDPOINT = f"https://{DOMAIN}/prod"


METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/$connect"


def authorizer_event(connection_id: str, token: str | None) -> dict[str, Any]:
    """The event of the $connect route's REQUEST authorizer."""
    request = event("$connect", connection_id, query={"token": token} if token else None)
    return {**request, "type": "REQUEST", "methodArn": METHOD_ARN}


def authorized_by(token: str) -> dict[str, Any] | None:
    """``requestContext.authorizer`` of a connection opened with ``token`` (None if refused)."""
    try:
        claims = verify_token(SECRET, token)
    except TokenError:
        return None
    return authorizer.allowed_context(authorizer.allow(claims, METHOD_ARN))


def event(
    route: str,
    connection_id: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """An API Gateway WebSocket event as Lambda receives it; a connection opened with
    ``token`` (or the query's) carries what the authorizer said of it, as on AWS."""
    request_id = str(uuid.uuid4())
    result: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE"),
            "connectionId": connection_id,
            "domainName": DOMAIN,
            "stage": "prod",
            "apiId": "abc123",
            "requestId": request_id,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        result["body"] = body if isinstance(body, str) else json.dumps(body)
    if query is not None:
        result["queryStringParameters"] = query
    opened_with = token or (query.get("token") if isinstance(query, dict) else None)
    context = authorized_by(opened_with) if isinstance(opened_with, str) else None
    if context is not None:
        result["requestContext"]["authorizer"] = context
    return result


def posted(connection_id: str) -> list[Any]:
    """Every message moto's management API received for ``connection_id``, in order."""
    backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
    # moto keys connections by the id as it appears in the URL path, still percent-encoded.
    raw = backend.connections[quote(connection_id, safe="")].data.decode()
    decoder = json.JSONDecoder()
    messages, position = [], 0
    while position < len(raw):
        message, position = decoder.raw_decode(raw, position)
        messages.append(message)
    return messages
