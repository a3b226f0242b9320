"""The local gateway's Prometheus metrics (docs/operations.md lists them).

Counted where things happen; the open connections are read from the gateway at each scrape.
``--metrics-address`` serves them; off by default.
"""

import json
from collections.abc import Callable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from p2p_protocol.messages import ErrorCode

MESSAGES = Counter(
    "signaling_gateway_messages", "Messages received from clients and homelabs, by route", ["route"]
)
DELIVERED = Counter(
    "signaling_gateway_messages_delivered",
    "Messages the handler sent to a connection (replies and relayed signals)",
)
ERRORS = Counter(
    "signaling_gateway_errors", "Error messages sent to connections, by error code", ["code"]
)
HANDLING = Histogram(
    "signaling_gateway_handling_seconds",
    "From a message's arrival until the handler is done with it, relaying included, by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
KNOWN_CODES = frozenset(code.value for code in ErrorCode)


def count_delivered(payload: bytes) -> None:
    """One message sent to a connection; an error is counted by its code too."""
    DELIVERED.inc()
    if b'"error"' not in payload:
        return
    try:
        message = json.loads(payload)
    except ValueError:
        return
    if isinstance(message, dict) and isinstance(message.get("error"), str):
        code = message["error"]
        ERRORS.labels(code if code in KNOWN_CODES else "other").inc()


class GatewayCollector(Collector):
    def __init__(self, open_connections: Callable[[], int]) -> None:
        self._open_connections = open_connections

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "signaling_gateway_open_connections",
            "WebSocket connections open now",
            value=self._open_connections(),
        )
