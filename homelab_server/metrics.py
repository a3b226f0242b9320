"""The daemon's Prometheus metrics (docs/operations.md lists them), counted where things happen.

Counters live in prometheus_client's default registry, as its documentation does it; the
gauges of the moment (peers, open channels, registration) are read from the daemon when
scraped (``DaemonCollector``). ``metrics_address`` in config.yml serves them; off by default.
"""

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

OFFERS_REFUSED = Counter(
    "homelab_p2p_offers_refused", "Offers refused, by the code the client was sent", ["reason"]
)
PEERS_CONNECTED = Counter(
    "homelab_p2p_peers_connected",
    "Peer connections made, by candidate pair type (host, srflx, relay)",
    ["pair"],
)
PEERS_FAILED = Counter(
    "homelab_p2p_peers_failed",
    "Peer connections that never connected or broke, by where (ice, dtls, timeout)",
    ["cause"],
)
CHANNELS_OPENED = Counter(
    "homelab_p2p_channels_opened",
    "Data channels opened to a service, by the pair type of their connection",
    ["service", "pair"],
)
CHANNELS_REFUSED = Counter(
    "homelab_p2p_channels_refused",
    "Data channels refused, by the code the client was sent",
    ["reason"],
)
SERVICE_BYTES = Counter(
    "homelab_p2p_service_bytes",
    "Bytes between peers and a service, counted as each channel ends (in: to the service; "
    "for http:// services the bodies)",
    ["service", "direction"],
)
REGISTRATIONS = Counter(
    "homelab_p2p_signaling_registrations", "Registrations with signaling (after each connect)"
)
SIGNALING_RETRIES = Counter(
    "homelab_p2p_signaling_retries", "Failed signaling connections or registrations, retried"
)
ROTATIONS = Counter(
    "homelab_p2p_signaling_rotations", "Signaling connections replaced before their age limit"
)


class DaemonCollector(Collector):
    """The gauges of the moment, read from the running daemon at each scrape."""

    def __init__(
        self,
        peers: Callable[[], list[dict[str, Any]]],
        registered: Callable[[], bool],
        data_path: tuple[str, str],
    ) -> None:
        self._peers = peers
        self._registered = registered
        self._data_path = data_path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        described = self._peers()
        by_pair = Tally(peer["pair"] or "connecting" for peer in described)
        peers = GaugeMetricFamily(
            "homelab_p2p_peers", "Peer connections now, by pair type or connecting", labels=["pair"]
        )
        for pair in ("host", "srflx", "relay", "connecting"):
            peers.add_metric([pair], by_pair[pair])
        yield peers
        yield GaugeMetricFamily(
            "homelab_p2p_open_channels",
            "Data channels open now, all peers",
            value=sum(peer["channels"] for peer in described),
        )
        yield GaugeMetricFamily(
            "homelab_p2p_signaling_registered",
            "1 while registered with signaling",
            value=int(self._registered()),
        )
        path = GaugeMetricFamily(
            "homelab_p2p_data_path",
            "The data path in use (always 1)",
            labels=["path", "ack_policy"],
        )
        path.add_metric(list(self._data_path), 1)
        yield path
