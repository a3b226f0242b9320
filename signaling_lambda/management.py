"""The API Gateway management API (``apigatewaymanagementapi``): reach client connections.

On AWS it is ``https://{domainName}/{stage}``; the local gateway serves the same API over
HTTP on loopback and points ``APIGW_MANAGEMENT_ENDPOINT`` at it, so these boto3 calls take
the same path in both places.
"""

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

GONE_CODES = ("GoneException", "BadRequestException")
"""Errors meaning "no such connection": gone, or an id that was never one."""

AWS_MANAGEMENT_CONFIG = Config(
    retries={"max_attempts": 2, "mode": "standard"},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=32,
)
"""For API Gateway on AWS, across the internet; the local gateway passes its own."""


class ManagementApiError(Exception):
    """The management API could not be used; str() says why and what to check."""


def _explain(action: str, endpoint: str, exc: Exception) -> ManagementApiError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        hint = (
            "; the function's role needs execute-api:ManageConnections on this API"
            if code in ("ForbiddenException", "AccessDeniedException")
            else ""
        )
        return ManagementApiError(f"{action} at {endpoint} failed: {code}{hint}")
    return ManagementApiError(
        f"{action} at {endpoint} failed: {exc}; check that APIGW_MANAGEMENT_ENDPOINT "
        "(or the event's domainName and stage) names a reachable management API"
    )


class Connections:
    """Post to the connections behind one management endpoint."""

    def __init__(self, endpoint: str, client: "ApiGatewayManagementApiClient") -> None:
        self.endpoint = endpoint
        self._client = client

    def post(self, connection_id: str, payload: bytes) -> bool:
        """Send ``payload`` to a connection; False when the connection is gone."""
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=payload)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in GONE_CODES:
                return False
            raise _explain("PostToConnection", self.endpoint, exc) from None
        except BotoCoreError as exc:
            raise _explain("PostToConnection", self.endpoint, exc) from None
        return True


ClientFactory = Callable[[str], "ApiGatewayManagementApiClient"]


def boto3_client_factory(
    session: boto3.session.Session | None = None, config: Config = AWS_MANAGEMENT_CONFIG
) -> ClientFactory:
    """Makes management API clients from ``session`` (the default session on Lambda)."""

    def make(endpoint: str) -> "ApiGatewayManagementApiClient":
        if session is None:
            return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)
        return session.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)

    return make


class ConnectionsDirectory:
    """One ``Connections`` per management endpoint, made on first use and kept (warm starts)."""

    def __init__(self, make_client: ClientFactory, override: str | None = None) -> None:
        self._make_client = make_client
        self._override = override.rstrip("/") if override else None
        self._by_endpoint: dict[str, Connections] = {}
        self._lock = threading.Lock()

    def endpoint_for(self, domain_name: str, stage: str) -> str:
        return self._override or f"https://{domain_name}/{stage}"

    def get(self, domain_name: str, stage: str) -> Connections:
        endpoint = self.endpoint_for(domain_name, stage)
        with self._lock:
            connections = self._by_endpoint.get(endpoint)
            if connections is None:
                connections = Connections(endpoint, self._make_client(endpoint))
                self._by_endpoint[endpoint] = connections
        return connections
