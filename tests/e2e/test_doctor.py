"""``homelab-p2p doctor`` in the NAT lab: all ✓ when healthy, and each provoked failure
gives its own ✗ line with the troubleshooting guide's row."""

import asyncio
import json
from typing import Any

import pytest

from lab import default_client_file, token
from lab.netns import venv_bin
from tests.e2e.conftest import NatSetup
from tests.support.natlab import INET_IP, TURN_PASSWORD, TURN_USER, start_turn, wait_turn_ready

pytestmark = pytest.mark.slow

STUN = f"stun:{INET_IP}:3478"
SECOND_STUN = f"stun:{INET_IP}:3480"
TURN = f"turn:{INET_IP}:3478?transport=udp"
TURN_FLAGS = ["--ice-server", TURN, "--ice-username", TURN_USER, "--ice-credential", TURN_PASSWORD]
GUIDE_MESSAGE = "The target (homelab_server) is not currently connected"


async def doctor(
    nat_lab: NatSetup, *ice: str, url: str | None = None, client_token: str | None = None
) -> tuple[int, dict[str, Any], str]:
    """Run doctor in the client's namespace: exit status, the JSON, and the text output."""
    base = [
        venv_bin("homelab-p2p"), "doctor",
        "--signaling-url", url or nat_lab.signaling_url,
        "--credential-file", str(default_client_file()),
        "--token", client_token or token("client", "doctor"),
        "--timeout", "5",
        *(ice or ("--ice-server", "none")),
    ]  # fmt: skip
    as_json = await asyncio.to_thread(nat_lab.client.run, *base, "--json", check=False)
    as_text = await asyncio.to_thread(nat_lab.client.run, *base, check=False)
    assert "Traceback" not in as_json.stderr + as_text.stderr, as_json.stderr + as_text.stderr
    assert as_json.returncode == as_text.returncode
    return as_json.returncode, json.loads(as_json.stdout), as_text.stdout


def statuses(report: dict[str, Any]) -> list[str]:
    return [check["status"] for check in report["checks"]]


def check(report: dict[str, Any], step: int) -> dict[str, Any]:
    found: dict[str, Any] = report["checks"][step - 1]
    return found


async def test_a_healthy_setup_passes_every_check(nat_lab: NatSetup) -> None:
    await nat_lab.start_daemon({}, ice_servers=[{"urls": STUN}])
    start_turn(nat_lab.nat.inet, nat_lab.workdir, port=3480)
    wait_turn_ready(nat_lab.workdir, port=3480)
    code, report, text = await doctor(
        nat_lab, "--ice-server", STUN, "--ice-server", SECOND_STUN, *TURN_FLAGS
    )
    assert code == 0, text
    assert statuses(report) == ["ok"] * 7, text
    assert report["ok"] is True
    assert check(report, 4)["detail"].startswith("answered; 0 of 32 peers")
    assert "relays from 203.0.113.1:" in check(report, 6)["detail"]
    assert " pair (local " in check(report, 7)["detail"]
    for line in ["✓ 1 Signaling URL", "✓ 7 WebRTC to the echo channel", "all checks passed"]:
        assert line in text


async def test_gateway_down_fails_step_1_with_the_guides_websocket_row(nat_lab: NatSetup) -> None:
    nat_lab.gateway.stop()
    code, report, text = await doctor(nat_lab)
    assert code == 1
    assert statuses(report) == ["fail", "fail", "skip", "skip", "skip", "skip", "skip"], text
    assert check(report, 1)["guide"]["error"] == "WebSocket connection failed"
    assert check(report, 1)["guide"]["cause"] == "Invalid URL or network issue"
    assert "✗ 1 Signaling URL" in text
    assert "solution: Verify the WebSocket URL" in text


async def test_a_bad_token_is_told_apart_from_the_network(nat_lab: NatSetup) -> None:
    code, report, text = await doctor(nat_lab, client_token="hp1.forged.token")
    assert code == 1
    assert statuses(report)[:2] == ["ok", "fail"], text
    assert "refused the token (HTTP 401)" in check(report, 2)["detail"]
    assert check(report, 2)["guide"]["cause"].startswith("The token is missing, expired, forged")


async def test_a_stopped_homelab_gives_the_guides_first_row(nat_lab: NatSetup) -> None:
    daemon = await nat_lab.start_daemon({})
    daemon.stop()
    code, report, text = await doctor(nat_lab)
    assert code == 1
    assert statuses(report) == ["ok", "ok", "ok", "fail", "skip", "skip", "skip"], text
    assert check(report, 4)["detail"] == GUIDE_MESSAGE
    assert check(report, 4)["guide"]["solution"].startswith("Start homelab_server")


async def test_an_unreachable_stun_server_fails_step_5(nat_lab: NatSetup) -> None:
    await nat_lab.start_daemon({})
    code, report, text = await doctor(nat_lab, "--ice-server", f"stun:{INET_IP}:3999")
    assert code == 1
    assert check(report, 5)["status"] == "fail", text
    assert f"{INET_IP}:3999 -> no answer within 5 s" in check(report, 5)["detail"]
    assert check(report, 5)["guide"]["error"] == "STUN server did not answer"


async def test_symmetric_nat_without_turn_says_turn_is_needed(nat_lab: NatSetup) -> None:
    nat_lab.nat.mode("nat1", "symmetric")
    nat_lab.nat.mode("nat2", "symmetric")
    await nat_lab.start_daemon({}, ice_servers=[{"urls": STUN}])
    start_turn(nat_lab.nat.inet, nat_lab.workdir, port=3480)
    wait_turn_ready(nat_lab.workdir, port=3480)
    code, report, text = await doctor(nat_lab, "--ice-server", STUN, "--ice-server", SECOND_STUN)
    assert code == 1
    assert check(report, 5)["status"] == "fail", text
    assert "the mapping changes per server: symmetric NAT" in check(report, 5)["detail"]
    assert check(report, 5)["guide"]["solution"].startswith("Configure a TURN server on both ends")
    assert check(report, 7)["status"] == "fail", text
    assert check(report, 7)["guide"]["error"] == "WebRTC connection timeout"
