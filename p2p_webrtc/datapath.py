"""Which data path a process uses: the fast one (webrtc/fastpath) or aiortc's standard one.

``fast`` changes only how each end spends CPU (batched reads, direct sends, DTLS through
OpenSSL without per-record exceptions, a SACK every second packet as RFC 9260 asks); the
packets on the wire keep their standard size and meaning, so it works with any peer.
``ack_policy: aggressive`` is the one option that changes wire behaviour: fewer SACKs and
longer bursts than the RFC recommends (see docs/performance.md for the risks).
"""

from dataclasses import dataclass
from enum import StrEnum


class DataPath(StrEnum):
    FAST = "fast"
    STANDARD = "standard"


class AckPolicy(StrEnum):
    RFC = "rfc"
    """A SACK for every second packet with data (RFC 9260 section 6.2), bursts of 4 packets."""
    AGGRESSIVE = "aggressive"
    """A SACK for every 16th packet or when the socket is drained, bursts of 32 packets."""


@dataclass(frozen=True)
class DataPathOptions:
    path: DataPath = DataPath.FAST
    ack_policy: AckPolicy = AckPolicy.RFC

    def describe(self) -> str:
        if self.path is DataPath.STANDARD:
            return "data path: standard (aiortc's own)"
        return f"data path: fast, {self.ack_policy.value} acknowledgements"


def parse_data_path(path: object, ack_policy: object) -> DataPathOptions:
    """Options from configuration values; ValueError says which value is wrong."""
    choices = ", ".join(p.value for p in DataPath)
    try:
        chosen_path = DataPath(str(path))
    except ValueError:
        raise ValueError(f"data_path: {path!r} is not one of {choices}") from None
    try:
        chosen_acks = AckPolicy(str(ack_policy))
    except ValueError:
        acks = ", ".join(p.value for p in AckPolicy)
        raise ValueError(f"ack_policy: {ack_policy!r} is not one of {acks}") from None
    return DataPathOptions(chosen_path, chosen_acks)
