"""The gateway's small parts: rate limit, connection caps, options, static files, events."""

import asyncio
from pathlib import Path

import pytest

from p2p_runtime.ratelimit import TokenBucket
from signaling_gateway.caps import CapReached, ConnectionCaps
from signaling_gateway.cli import main
from signaling_gateway.events import Caller, EventFactory, new_connection_id
from signaling_gateway.shares import HandlerShares
from signaling_gateway.static import static_response
from signaling_lambda.events import Invocation


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert sum(bucket.allow() for _ in range(25)) == 20
    clock.now += 0.5  # five tokens come back
    assert sum(bucket.allow() for _ in range(10)) == 5
    clock.now += 100  # never more than the burst
    assert sum(bucket.allow() for _ in range(50)) == 20


def test_token_bucket_reservations_past_the_burst_are_spaced_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    clock.now += 0.3  # the debt is paid: the next waits one interval again
    assert bucket.reserve() == pytest.approx(0.1)


def refusal(caps: ConnectionCaps, source_ip: str, token: str | None) -> tuple[int, str]:
    """The status and the option of a connection the caps must refuse."""
    with pytest.raises(CapReached) as refused:
        caps.admit(source_ip, token)
    return refused.value.status, refused.value.option


def test_caps_refuse_past_each_cap_with_its_status_and_option() -> None:
    caps = ConnectionCaps(total=4, per_ip=2, per_token=1)
    caps.admit("10.0.0.1", "t1")
    assert refusal(caps, "10.0.0.2", "t1") == (429, "--max-connections-per-token")
    caps.admit("10.0.0.1", None)  # no token: counted in all and per address only
    assert refusal(caps, "10.0.0.1", "t2") == (429, "--max-connections-per-ip")
    caps.admit("10.0.0.2", "t2")
    caps.admit("10.0.0.3", "t3")
    assert refusal(caps, "10.0.0.4", "t4") == (503, "--max-connections")


def test_a_place_is_given_back_once_under_every_cap() -> None:
    caps = ConnectionCaps(total=2, per_ip=1, per_token=1)
    place = caps.admit("10.0.0.1", "t")
    place.release()
    place.release()  # a second release changes nothing
    assert caps.in_use == 0
    again = caps.admit("10.0.0.1", "t")  # address and token have their place back
    caps.admit("10.0.0.2", "u")
    with pytest.raises(CapReached):
        caps.admit("10.0.0.3", "v")  # two open: the double release did not free a third
    again.release()
    caps.admit("10.0.0.3", "v")


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--max-connections", "0", "--max-connections must be a positive number"),
        ("--max-connections-per-ip", "-1", "--max-connections-per-ip must be a positive"),
        ("--max-connections-per-token", "0", "--max-connections-per-token must be a positive"),
        ("--max-connections", "many", "invalid int value"),
        ("--max-send-buffer", "1000", "--max-send-buffer must be at least 131072 bytes"),
        ("--handler-workers", "-1", "--handler-workers must be between 0 and 64"),
        ("--handler-workers", "65", "--handler-workers must be between 0 and 64"),
    ],
)
def test_bad_limits_are_argument_errors(
    option: str, value: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--no-auth", option, value])
    assert exited.value.code == 2
    assert why in capsys.readouterr().err


def test_static_files_stay_inside_their_directory(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("home")
    (site / "js" / "a.js").write_text("a")
    (tmp_path / "private").write_text("secret")
    (site / "link").symlink_to(tmp_path / "private")
    assert static_response(site, "/").body == b"home"
    assert static_response(site, "/js/a.js?v=1").body == b"a"
    for path in [
        "/../private",
        "/%2e%2e/private",
        "/link",
        "/js/../../private",
        "/nothing",
        "/a%00b",
    ]:
        assert static_response(site, path).status_code == 404, path
    assert static_response(None, "/").status_code == 404


def test_connection_ids_look_like_api_gateways() -> None:
    ids = {new_connection_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and i.endswith("=") for i in ids)


def test_events_are_what_the_handler_reads() -> None:
    factory = EventFactory("127.0.0.1:8765", "prod")
    caller = Caller("ABC=", "127.0.0.1", "pytest")
    connect = Invocation.from_event(factory.connect(caller, {"Host": "x"}, {"token": "t"}))
    assert (connect.route_key, connect.connection_id, connect.query) == (
        "$connect",
        "ABC=",
        {"token": "t"},
    )
    message = Invocation.from_event(factory.message(caller, "sendSignal", '{"a":1}'))
    assert (message.route_key, message.body, message.stage) == ("sendSignal", '{"a":1}', "prod")
    binary = Invocation.from_event(factory.binary_message(caller, "AAE="))
    assert (binary.route_key, binary.is_base64) == ("$default", True)
    gone = factory.disconnect(caller, 1001, "Going away")
    assert gone["requestContext"]["disconnectStatusCode"] == 1001


async def test_one_keys_messages_run_a_few_at_a_time_and_others_pass() -> None:
    shares = HandlerShares(per_key=2)
    running: dict[str, int] = {"flood": 0, "other": 0}
    most = dict(running)
    release = asyncio.Event()

    async def message(key: str) -> None:
        async with shares.slot(key):
            running[key] += 1
            most[key] = max(most[key], running[key])
            await release.wait()
            running[key] -= 1

    flood = [asyncio.create_task(message("flood")) for _ in range(10)]
    other = asyncio.create_task(message("other"))
    await asyncio.sleep(0)  # every task has started and taken a slot, or waits for one
    assert running == {"flood": 2, "other": 1}  # the other key did not wait behind the flood
    release.set()
    await asyncio.gather(*flood, other)
    assert most == {"flood": 2, "other": 1}
    assert len(shares) == 0  # keys with nothing running are forgotten
