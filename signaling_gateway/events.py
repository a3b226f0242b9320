"""API Gateway WebSocket events, shaped as Lambda receives them (the fields the AWS docs list)."""

import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def new_connection_id() -> str:
    """An id shaped like API Gateway's: 16 characters of base64url ending in ``=``."""
    return secrets.token_urlsafe(11) + "="


def _request_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of a connection (``requestContext.identity``)."""

    connection_id: str
    source_ip: str
    user_agent: str
    connected_at: float = field(default_factory=time.time)
    authorizer: dict[str, Any] | None = None
    """What the ``$connect`` authorizer said of the connection; in every later event."""


class EventFactory:
    def __init__(self, domain_name: str, stage: str, api_id: str = "local") -> None:
        self._domain_name = domain_name
        self._stage = stage
        self._api_id = api_id

    def _context(self, caller: Caller, route_key: str, event_type: str) -> dict[str, Any]:
        now = time.time()
        request_id = str(uuid.uuid4())
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self._stage,
            "connectedAt": int(caller.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": caller.source_ip, "userAgent": caller.user_agent},
            "requestId": request_id,
            "domainName": self._domain_name,
            "connectionId": caller.connection_id,
            "apiId": self._api_id,
            **({"authorizer": dict(caller.authorizer)} if caller.authorizer is not None else {}),
        }

    def authorizer_request(
        self, caller: Caller, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any]:
        """The event of the ``$connect`` route's REQUEST authorizer."""
        return {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:local:000000000000:{self._api_id}/"
            f"{self._stage}/$connect",
            "headers": dict(headers),
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": dict(query) or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
            "stageVariables": {},
            "requestContext": self._context(caller, "$connect", "CONNECT"),
        }

    def connect(
        self, caller: Caller, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> dict[str, Any]:
        return {
            "headers": dict(headers),
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": dict(query) or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
            "requestContext": self._context(caller, "$connect", "CONNECT"),
            "isBase64Encoded": False,
        }

    def message(self, caller: Caller, route_key: str, body: str) -> dict[str, Any]:
        context = self._context(caller, route_key, "MESSAGE")
        context["messageId"] = context["requestId"]
        return {"requestContext": context, "body": body, "isBase64Encoded": False}

    def binary_message(self, caller: Caller, body_base64: str) -> dict[str, Any]:
        """A binary frame: API Gateway cannot select a route on it, so it goes to ``$default``."""
        context = self._context(caller, "$default", "MESSAGE")
        context["messageId"] = context["requestId"]
        return {"requestContext": context, "body": body_base64, "isBase64Encoded": True}

    def disconnect(self, caller: Caller, status_code: int, reason: str) -> dict[str, Any]:
        context = self._context(caller, "$disconnect", "DISCONNECT")
        context["disconnectStatusCode"] = status_code
        context["disconnectReason"] = reason
        return {"headers": {}, "requestContext": context, "isBase64Encoded": False}


@dataclass(frozen=True)
class LambdaContext:
    """The parts of Lambda's context object a handler may read."""

    aws_request_id: str
    function_name: str = "signaling-gateway"
    memory_limit_in_mb: int = 128

    def get_remaining_time_in_millis(self) -> int:
        return 29_000
