"""Types shared by the integration tests' fixtures."""

from collections.abc import Callable

from tests.support.gateway import GatewayProcess

StartGateway = Callable[..., GatewayProcess]
