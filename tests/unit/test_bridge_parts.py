"""Plain parts of the bridge: ICE URLs, signals, HTTP framing, backoff."""

import json
import random
import re
from typing import Any

import pytest

from homelab_server.signaling import backoff_delay
from p2p_protocol import httpframing, signals
from p2p_protocol.iceservers import parse_ice_url


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


def _head(path: str = "/", headers: list[list[str]] | None = None) -> str:
    return json.dumps({"method": "POST", "path": path, "headers": headers or []})


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([["Content-Length", "3"], ["content-length", "3"]], "more than one Content-Length"),
        ([["Content-Length", "3"], ["Content-Length", "30"]], "more than one Content-Length"),
        ([["Content-Length", "abc"]], "'abc' is not a number of bytes"),
        ([["Content-Length", "-1"]], "'-1' is not a number of bytes"),
        ([["Content-Length", "1e3"]], "is not a number of bytes"),
        ([["Content-Length", "3"], ["Transfer-Encoding", "chunked"]], "both Content-Length and"),
        ([["Transfer-Encoding", "gzip, chunked"]], "the only Transfer-Encoding a request may"),
        ([["X-Note", "bell\u0007"]], "is not a [name, value] pair of valid strings"),
        ([["X-Note", "del\u007f"]], "is not a [name, value] pair of valid strings"),
        ([["X-Note", "nul\u0000"]], "is not a [name, value] pair of valid strings"),
    ],
)
def test_ambiguous_request_framing_is_refused(headers: list[list[str]], problem: str) -> None:
    with pytest.raises(httpframing.FramingError) as refused:
        httpframing.parse_request_head(_head(headers=headers))
    assert problem in str(refused.value)


def test_one_numeric_content_length_is_the_bodys_length() -> None:
    head = httpframing.parse_request_head(_head(headers=[["Content-Length", "12"]]))
    assert head.content_length == 12
    chunked = httpframing.parse_request_head(_head(headers=[["Transfer-Encoding", "Chunked"]]))
    assert chunked.content_length is None
    tabbed = httpframing.parse_request_head(_head(headers=[["X-Note", "a\tb \u00e9"]]))
    assert tabbed.headers == [("X-Note", "a\tb \u00e9")]


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/", "/"),
        ("/a/b?x=1", "/a/b?x=1"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/./b/.", "/a/b/"),
        ("/a/%2E%2e/b", "/b"),
        ("/a/..", "/"),
        ("/x?next=/../../etc", "/x?next=/../../etc"),  # the query is the service's business
    ],
)
def test_request_paths_are_resolved_inside_the_service(path: str, resolved: str) -> None:
    assert httpframing.service_path(path) == resolved


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/../admin/secret", "climbs out of the service's base path"),
        ("/%2e%2e/admin", "climbs out of the service's base path"),
        ("/a/../../admin", "climbs out of the service's base path"),
        ("/.%2E/admin", "climbs out of the service's base path"),
        ("/..\\admin", "must not hold a backslash"),
        ("/a%2f..%2fadmin", 'must not hold an encoded "/"'),
        ("/a%5Cb", 'must not hold an encoded "/"'),
        ("/a%00b", 'must not hold an encoded "/"'),
        ("/a#frag", 'must not hold a backslash or "#"'),
    ],
)
def test_request_paths_that_leave_the_base_path_are_refused(path: str, problem: str) -> None:
    with pytest.raises(httpframing.FramingError) as refused:
        httpframing.service_path(path)
    assert problem in str(refused.value)


@pytest.mark.parametrize("path", ["/caf\u00e9", "/a\tb", "/a\u007f"])
def test_request_paths_are_visible_ascii(path: str) -> None:
    with pytest.raises(httpframing.FramingError, match="only visible ASCII"):
        httpframing.parse_request_head(_head(path))


OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
    "a=fingerprint:sha-256 0D:BE\r\na=setup:actpass\r\na=sctp-port:5000\r\n"
)


def test_an_offer_with_a_data_channel_section_credentials_and_a_fingerprint_is_answerable() -> None:
    assert signals.check_offer(OFFER) == 0
    candidates = "".join(f"a=candidate:{n} 1 udp 1 10.0.0.{n} 5000 typ host\r\n" for n in range(3))
    assert signals.check_offer(OFFER + candidates) == 3


@pytest.mark.parametrize(
    ("sdp", "problem"),
    [
        ("v=0\r\n", "no data channel section"),
        (OFFER.replace("m=application 9 UDP/DTLS/SCTP", "m=audio 9 RTP/AVP"), "no data channel"),
        (OFFER.replace("a=ice-ufrag:abcd\r\n", ""), "no ICE credentials (a=ice-ufrag)"),
        (OFFER.replace("a=ice-pwd:0123456789abcdef012345", "a=ice-pwd:"), "(a=ice-pwd)"),
        (OFFER.replace("a=fingerprint:sha-256 0D:BE\r\n", ""), "no DTLS fingerprint"),
        (OFFER.replace("a=setup:actpass\r\n", ""), "no DTLS role (a=setup)"),
        (
            OFFER + "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n" * 33,
            "33 ICE candidates; at most 32",
        ),
    ],
)
def test_offers_that_can_never_connect_are_refused(sdp: str, problem: str) -> None:
    with pytest.raises(signals.BadSignal) as refused:
        signals.check_offer(sdp)
    assert problem in str(refused.value)


def test_a_websocket_upgrade_head_is_version_2_and_an_old_response_says_so() -> None:
    text = httpframing.request_head("GET", "/ws", [("sec-websocket-protocol", "chat")], "websocket")
    head = httpframing.parse_request_head(text)
    assert (head.upgrade, json.loads(text)["v"]) == ("websocket", 2)
    assert httpframing.parse_request_head(httpframing.request_head("GET", "/", [])).upgrade is None
    assert httpframing.parse_response_head(httpframing.response_head(101, "", [])).version == 2
    old = json.dumps({"status": 400, "statusText": "Bad Request", "headers": []})
    assert httpframing.parse_response_head(old).version == 1


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        ({"method": "GET", "path": "/", "upgrade": "h2c"}, '"upgrade" can only be "websocket"'),
        ({"method": "POST", "path": "/", "upgrade": "websocket"}, "on a GET"),
        (
            {
                "method": "GET",
                "path": "/",
                "upgrade": "websocket",
                "headers": [["content-length", "3"]],
            },
            "a WebSocket upgrade has no body",
        ),
    ],
)
def test_bad_upgrades_are_refused(head: dict[str, Any], problem: str) -> None:
    with pytest.raises(httpframing.FramingError, match=re.escape(problem)):
        httpframing.parse_request_head(json.dumps(head))


def test_websocket_messages_survive_pieces_of_any_size() -> None:
    assembler = httpframing.WebSocketAssembler(limit=100_000)
    for kind, data in [(httpframing.TEXT, "é".encode() * 20_000), (httpframing.BINARY, b""),
                       (httpframing.BINARY, bytes(range(256)) * 100)]:  # fmt: skip
        pieces = httpframing.websocket_pieces(kind, data, 1000)
        assert all(len(piece) <= 1000 for piece in pieces)
        results = [assembler.add(piece) for piece in pieces]
        assert results[:-1] == [None] * (len(pieces) - 1)
        assert results[-1] == (kind, data)


def test_a_websocket_message_past_the_limit_or_a_bad_piece_is_refused() -> None:
    assembler = httpframing.WebSocketAssembler(limit=10)
    *first, last = httpframing.websocket_pieces(httpframing.BINARY, b"x" * 11, 4)
    assert [assembler.add(piece) for piece in first] == [None, None, None]  # 9 bytes
    with pytest.raises(httpframing.MessageTooLong):
        assembler.add(last)  # 11
    for piece, problem in [(b"", "kind byte"), (b"\x03abc", "kind byte")]:
        with pytest.raises(httpframing.FramingError, match=problem):
            httpframing.WebSocketAssembler().add(piece)
    mixed = httpframing.WebSocketAssembler()
    assert mixed.add(bytes([httpframing.TEXT | httpframing.MORE]) + b"a") is None
    with pytest.raises(httpframing.FramingError, match="changed its kind"):
        mixed.add(bytes([httpframing.BINARY]) + b"b")


def test_websocket_close_messages() -> None:
    assert httpframing.parse_websocket_close(httpframing.websocket_close(1000, "bye")) == (
        1000,
        "bye",
    )
    assert httpframing.parse_websocket_close('{"close": 5}') == (1002, "")
    assert httpframing.parse_websocket_close('{"end": true}') is None
    assert httpframing.parse_websocket_close("not json") is None
