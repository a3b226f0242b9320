"""The parts of an API Gateway WebSocket event the handler uses, checked once."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class MalformedEvent(ValueError):
    """The invocation is not an API Gateway WebSocket event; str() says what is missing."""


@dataclass(frozen=True)
class Invocation:
    route_key: str
    connection_id: str
    domain_name: str
    stage: str
    request_id: str
    body: str | None
    is_base64: bool
    query: Mapping[str, str]
    authorizer: Mapping[str, Any] | None = None
    """``requestContext.authorizer``: what the ``$connect`` authorizer said of the connection."""

    @classmethod
    def from_event(cls, event: object) -> "Invocation":
        if not isinstance(event, dict):
            raise MalformedEvent(f"the event is a {type(event).__name__}, not an object")
        context = event.get("requestContext")
        if not isinstance(context, dict):
            raise MalformedEvent("the event has no requestContext object")
        fields: dict[str, str] = {}
        for key in ("routeKey", "connectionId", "domainName", "stage"):
            value = context.get(key)
            if not isinstance(value, str) or not value:
                raise MalformedEvent(f"requestContext.{key} is missing or not a string")
            fields[key] = value
        body = event.get("body")
        query = event.get("queryStringParameters")
        request_id = context.get("requestId")
        return cls(
            route_key=fields["routeKey"],
            connection_id=fields["connectionId"],
            domain_name=fields["domainName"],
            stage=fields["stage"],
            request_id=request_id if isinstance(request_id, str) else "",
            body=body if isinstance(body, str) else None,
            is_base64=event.get("isBase64Encoded") is True,
            query=_string_map(query),
            authorizer=authorizer
            if isinstance(authorizer := context.get("authorizer"), dict)
            else None,
        )


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
