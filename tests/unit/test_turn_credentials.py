"""The turn_server role's shared-secret credentials: coturn's scheme, stable within a period."""

import base64
import hashlib
import hmac
import importlib.util
from pathlib import Path

PLUGIN = (
    Path(__file__).resolve().parents[2] / "roles/turn_server/filter_plugins/turn_credentials.py"
)
spec = importlib.util.spec_from_file_location("turn_credentials", PLUGIN)
assert spec is not None
assert spec.loader is not None
turn_credentials = importlib.util.module_from_spec(spec)
spec.loader.exec_module(turn_credentials)

DAY = 86400


def test_the_credential_is_coturns_hmac_of_the_username() -> None:
    login = turn_credentials.turn_rest_credentials("s3cret", "homelab-p2p", 30, now=100 * DAY)
    expiry, name = login["username"].split(":")
    assert name == "homelab-p2p"
    digest = hmac.new(b"s3cret", login["username"].encode(), hashlib.sha1).digest()
    assert login["credential"] == base64.b64encode(digest).decode()
    assert int(expiry) - 100 * DAY >= 30 * DAY  # valid for at least one more period


def test_runs_within_a_period_agree_and_the_next_period_renews() -> None:
    first = turn_credentials.turn_rest_credentials("s", "n", 30, now=90 * DAY + 1)
    later = turn_credentials.turn_rest_credentials("s", "n", 30, now=119 * DAY)
    renewed = turn_credentials.turn_rest_credentials("s", "n", 30, now=120 * DAY)
    assert first == later
    assert renewed != first


def test_ice_entries_cover_udp_tcp_and_tls_when_given() -> None:
    login = {"username": "u", "credential": "c"}
    plain = turn_credentials.turn_ice_servers(login, "turn.example", 3478)
    assert [s["urls"] for s in plain] == [
        "turn:turn.example:3478?transport=udp",
        "turn:turn.example:3478?transport=tcp",
    ]
    tls = turn_credentials.turn_ice_servers(login, "turn.example", 3478, 5349)
    assert tls[-1] == {
        "username": "u",
        "credential": "c",
        "urls": "turns:turn.example:5349?transport=tcp",
    }
