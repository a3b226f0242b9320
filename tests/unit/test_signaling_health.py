"""What the daemon's watchdog asks of its signaling session: is it keeping to its schedule?"""

from typing import Any

from homelab_server.config import DaemonConfig
from homelab_server.signaling import STUCK_AFTER, HomelabSignaling
from p2p_protocol.session import Connect


async def ignore(*_: Any) -> None:
    """Signals and errors: none arrive in this test."""


def test_a_session_late_on_its_next_step_is_unhealthy_and_says_how_late() -> None:
    now = [1000.0]
    signaling = HomelabSignaling(
        DaemonConfig(signaling_url="ws://127.0.0.1:1/prod"), ignore, ignore, clock=lambda: now[0]
    )
    session = signaling._session
    [connect] = session.start()
    assert isinstance(connect, Connect)
    assert signaling.health() is None  # opening: only an event can move it on

    session.register_failed(connect.conn, now[0], "connection refused")
    retry_at = session.next_deadline()
    assert retry_at is not None
    now[0] = retry_at + STUCK_AFTER  # late, but not past the bound
    assert signaling.health() is None
    now[0] = retry_at + STUCK_AFTER + 15
    assert signaling.health() == (
        f"the signaling session is {STUCK_AFTER + 15:.0f} s late on its next step"
    )
