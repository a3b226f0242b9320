"""Plain parts of the bridge: ICE URLs, signals, HTTP framing, backoff."""

import json
import random

import pytest

from homelab_server import httpframing, signals
from homelab_server.iceservers import parse_ice_url
from homelab_server.signaling import backoff_delay


@pytest.mark.parametrize(
    ("url", "host", "port", "transport"),
    [
        ("stun:203.0.113.1", "203.0.113.1", 3478, "udp"),
        ("stun:stun.l.google.com:19302", "stun.l.google.com", 19302, "udp"),
        ("turn:203.0.113.1:3478?transport=tcp", "203.0.113.1", 3478, "tcp"),
        ("turns:turn.example.org", "turn.example.org", 5349, "tcp"),
        ("stun:[2001:db8::1]:3478", "2001:db8::1", 3478, "udp"),
    ],
)
def test_ice_urls(url: str, host: str, port: int, transport: str) -> None:
    server = parse_ice_url(url, "u", "p")
    assert (server.host, server.port, server.transport) == (host, port, transport)


@pytest.mark.parametrize(
    "url",
    [
        "stun:",
        "http://x",
        "stun:x?transport=udp",
        "turn:x:99999?transport=udp",
        "turns:x?transport=udp",
        "stuns:x",
    ],
)
def test_bad_ice_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_ice_url(url, "u", "p")


def test_signals_as_objects_or_json_strings() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"
    assert signals.parse_signal({"type": "offer", "sdp": sdp}).sdp == sdp
    assert signals.parse_signal(json.dumps({"type": "answer", "sdp": sdp})).type == "answer"
    candidate = signals.parse_signal(
        {"type": "candidate", "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"}
    )
    assert candidate.candidate is not None
    assert candidate.candidate["candidate"].startswith("candidate:")
    assert signals.parse_signal({"type": "error", "code": "busy", "message": "m"}).code == "busy"


@pytest.mark.parametrize(
    "data",
    [
        None,
        5,
        "nope",
        {"type": "hello"},
        {"type": "offer"},
        {"type": "offer", "sdp": "x"},
        {"type": "candidate"},
    ],
)
def test_bad_signals(data: object) -> None:
    with pytest.raises(signals.BadSignal):
        signals.parse_signal(data)


def test_request_heads_round_trip() -> None:
    text = httpframing.request_head("POST", "/api?x=1", [("content-type", "application/json")])
    head = httpframing.parse_request_head(text)
    assert (head.method, head.path, head.headers) == (
        "POST",
        "/api?x=1",
        [("content-type", "application/json")],
    )
    response = httpframing.parse_response_head(
        httpframing.response_head(404, "Not Found", [("a", "b")])
    )
    assert (response.status, response.status_text) == (404, "Not Found")
    assert httpframing.is_end(httpframing.END)
    assert not httpframing.is_end('{"end": false}')


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"method": "get", "path": "/"}',
        '{"method": "GET", "path": "relative"}',
        '{"method": "GET", "path": "/a b"}',
        '{"method": "GET", "path": "/", "headers": [["bad name", "v"]]}',
        '{"method": "GET", "path": "/", "headers": [["x", "line\\r\\nbreak"]]}',
        '{"method": "GET", "path": "/", "headers": {"x": "y"}}',
    ],
)
def test_bad_request_heads(text: str) -> None:
    with pytest.raises(httpframing.FramingError):
        httpframing.parse_request_head(text)


def test_hop_by_hop_headers_stay_on_their_hop() -> None:
    headers = [
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "1"),
        ("Host", "example"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "5"),
        ("Accept", "*/*"),
    ]
    assert httpframing.forwardable(headers) == [("Content-Length", "5"), ("Accept", "*/*")]


def test_backoff_is_capped_exponential_with_jitter() -> None:
    random.seed(7)
    for attempt in range(20):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, cap=30.0) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
        assert len(set(delays)) > 150
