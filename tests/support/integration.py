"""Types shared by the integration tests' fixtures."""

from collections.abc import Callable

from lab.gateway import GatewayProcess

StartGateway = Callable[..., GatewayProcess]
