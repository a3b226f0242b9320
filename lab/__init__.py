"""The lab: network namespaces, a gateway process, daemons, Chromium, hostile peers; shared
by the tests and the benchmarks."""

from p2p_protocol.tokens import issue_token

SECRET = b"test-secret-0123456789abcdef-0123456789"
"""The signing secret of every test gateway and handler."""


def token(
    role: str = "client", name: str = "alice", ttl: int = 3600, now: float | None = None
) -> str:
    """A token signed with SECRET (``now`` in the past makes an expired one)."""
    return issue_token(SECRET, role, name, ttl, now=now)
