"""What the project's signaling link says when the gateway refuses a connection for its
caps: which limit, and what to do, not the URL hint meant for a wrong address."""

import pytest

from lab import token
from signaling_client.link import Link, SignalingRefused
from tests.support.integration import StartGateway


async def ignore(*_: object) -> None:
    """A link's signal and error handler for links that only need to stay open."""


@pytest.mark.parametrize(
    ("cap", "status", "says"),
    [
        (
            "--max-connections-per-token",
            429,
            "the signaling service refused another connection (HTTP 429): too many are open at "
            "once from this address or with this token; end some (the client agent, on by "
            "default, keeps one per homelab) or raise the gateway's limits",
        ),
        (
            "--max-connections",
            503,
            "the signaling service is at its limit of open connections (HTTP 503); try again "
            "shortly, or raise the gateway's --max-connections",
        ),
    ],
    ids=["per-token", "total"],
)
async def test_a_connection_past_a_cap_is_refused_with_what_to_do(
    start_gateway: StartGateway, cap: str, status: int, says: str
) -> None:
    gateway = start_gateway(cap, "1")
    first = await Link.open(gateway.url, token(), ignore, ignore)
    try:
        with pytest.raises(SignalingRefused) as refused:
            await Link.open(gateway.url, token(), ignore, ignore)
    finally:
        await first.close()
    assert refused.value.http_status == status
    assert str(refused.value) == says
