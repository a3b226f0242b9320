"""What lets an operator see the daemon: its status socket and its Prometheus metrics.

Both are local endpoints beside the bridge itself, opened at start (a failure is one
sentence and exit status 2) and closed last.
"""

import os
import time
from typing import Any

from prometheus_client import REGISTRY

from homelab_server.config import DaemonConfig
from homelab_server.metrics import DaemonCollector
from homelab_server.peers import PeerManager
from homelab_server.signaling import HomelabSignaling
from homelab_server.status import SCHEMA, StatusSocket
from p2p_runtime.metrics_http import MetricsEndpoint


class EndpointError(Exception):
    """An endpoint could not be opened; str() names the key and what to do."""


class Observing:
    """The status socket and the metrics endpoint of one running daemon (each if configured)."""

    def __init__(self, config: DaemonConfig, peers: PeerManager, signaling: HomelabSignaling):
        self._config = config
        self._peers = peers
        self._signaling = signaling
        self._started = time.monotonic()
        self._status: StatusSocket | None = None
        self._metrics: MetricsEndpoint | None = None

    def snapshot(self) -> dict[str, Any]:
        """What ``homelab-p2p status`` shows."""
        config = self._config
        return {
            "schema": SCHEMA,
            "name": config.name,
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "signaling": self._signaling.describe(),
            "services": sorted(config.services),
            "max_peers": config.max_peers,
            "peers": self._peers.describe(),
            "offers_refused": dict(self._peers.offers_refused),
        }

    async def start(self) -> None:
        config = self._config
        if config.status_socket is not None:
            self._status = StatusSocket(config.status_socket, self.snapshot)
            try:
                await self._status.start()
            except OSError as exc:
                raise EndpointError(
                    f"status_socket: cannot listen on {config.status_socket} "
                    f"({exc.strerror or exc}); fix its directory or leave the key out"
                ) from None
        if config.metrics_address is not None:
            REGISTRY.register(
                DaemonCollector(
                    self._peers.describe,
                    lambda: not self._signaling.disconnected.is_set(),
                    (config.data_path.path.value, config.data_path.ack_policy.value),
                )
            )
            self._metrics = MetricsEndpoint()
            host, port = config.metrics_address
            try:
                await self._metrics.start(host, port)
            except OSError as exc:
                raise EndpointError(
                    f"metrics_address: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                    "choose another port or leave the key out"
                ) from None

    async def close(self) -> None:
        if self._status is not None:
            await self._status.close()
        if self._metrics is not None:
            await self._metrics.close()
