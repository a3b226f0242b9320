"""The gateway's small parts: rate limit, static files, events."""

from pathlib import Path

from signaling_lambda.events import Invocation
from signaling_lambda.gateway.events import Caller, EventFactory, new_connection_id
from signaling_lambda.gateway.ratelimit import TokenBucket
from signaling_lambda.gateway.static import static_response


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
