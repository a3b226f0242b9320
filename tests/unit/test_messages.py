import json

import pytest

from p2p_protocol.messages import (
    MAX_DATA_BYTES,
    BadMessage,
    ErrorCode,
    describe_data,
    encode,
    parse_body,
    parse_register,
    parse_send_signal,
    select_route,
)


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action":"sendSignal"}', "sendSignal"),
        ('{"action":"register"}', "register"),
        ('{"action":"ping"}', "ping"),
        ('{"action":"$connect"}', "$default"),
        ('{"action":"other"}', "$default"),
        ('{"action":1}', "$default"),
        ("[]", "$default"),
        ("nope", "$default"),
        ("[" * 100000, "$default"),
        (None, "$default"),
        (b'{"action":"ping"}', "$default"),
    ],
)
def test_route_selection_is_on_the_action_field(body: str | bytes | None, route: str) -> None:
    assert select_route(body) == route


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", ErrorCode.INVALID_JSON),
        ("  ", ErrorCode.INVALID_JSON),
        ("{", ErrorCode.INVALID_JSON),
        ("42", ErrorCode.BAD_REQUEST),
        ("[" * 100000 + "]" * 100000, ErrorCode.BAD_REQUEST),
        ('{"a":' * 40 + "1" + "}" * 40, ErrorCode.BAD_REQUEST),
        (None, ErrorCode.INVALID_JSON),
    ],
)
def test_parse_body_refusals(body: str | None, code: ErrorCode) -> None:
    with pytest.raises(BadMessage) as refused:
        parse_body(body)
    assert refused.value.code == code


def test_binary_bodies_are_refused() -> None:
    with pytest.raises(BadMessage, match="Binary frames"):
        parse_body("AAEC", is_base64=True)


def test_send_signal_accepts_any_json_data_up_to_the_limit() -> None:
    assert parse_send_signal({"to": "laptop", "data": None}).data is None
    at_limit = "x" * (MAX_DATA_BYTES - 2)
    assert parse_send_signal({"to": "laptop", "data": at_limit}).data == at_limit
    with pytest.raises(BadMessage) as refused:
        parse_send_signal({"to": "laptop", "data": at_limit + "x"})
    assert refused.value.code == ErrorCode.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(
    "message",
    [
        {"data": 1},
        {"to": "", "data": 1},
        {"to": 7, "data": 1},
        {"to": "x" * 300, "data": 1},
        {"to": "me"},
    ],
)
def test_send_signal_refusals(message: dict[str, object]) -> None:
    with pytest.raises(BadMessage) as refused:
        parse_send_signal(message)
    assert refused.value.code == ErrorCode.BAD_REQUEST


def test_register_checks_the_name_and_token_types() -> None:
    assert parse_register({"name": "nas-1", "token": "t"}).name == "nas-1"
    for bad in ({"name": "a b"}, {"name": 3}, {}, {"name": "ok", "token": 5}):
        with pytest.raises(BadMessage):
            parse_register(bad)


def test_encode_keeps_unicode_and_escapes_lone_surrogates() -> None:
    assert encode({"d": "é"}) == '{"d":"é"}'.encode()
    escaped = encode({"d": "\ud800"})
    assert escaped == b'{"d":"\\ud800"}'
    assert json.loads(escaped) == {"d": "\ud800"}


@pytest.mark.parametrize(
    ("data", "word"),
    [
        ({"type": "offer"}, "offer"),
        ('{"type":"answer"}', "answer"),
        ({"type": "offer\n[ERROR] forged"}, "message"),
        ("{not json", "message"),
        (5, "message"),
    ],
)
def test_describe_data_only_lets_word_like_types_into_logs(data: object, word: str) -> None:
    assert describe_data(data) == word


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("NaN", "holds NaN"),
        ("Infinity", "holds Infinity"),
        ("-Infinity", "holds -Infinity"),
        ("1e999", "holds 1e999, which overflows to infinity"),
        ("-1.5E+400", "holds -1.5E+400, which overflows to infinity"),
    ],
)
def test_parse_body_refuses_numbers_json_does_not_have(number: str, why: str) -> None:
    with pytest.raises(BadMessage) as refused:
        parse_body(f'{{"action":"sendSignal","to":"me","data":{{"x":[{number}]}}}}')
    assert refused.value.code == ErrorCode.BAD_REQUEST
    assert why in refused.value.message
    assert refused.value.message.endswith("JSON has no such numbers")


def test_parse_body_keeps_numbers_json_has() -> None:
    message = parse_body('{"a":1e308,"b":-2.5e-400,"c":12345678901234567890,"d":0.1}')
    assert message == {"a": 1e308, "b": -0.0, "c": 12345678901234567890, "d": 0.1}


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_encode_never_writes_nan_or_infinity(number: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode({"data": number})
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode({"data": number, "d": "\ud800"})  # the ASCII fallback refuses them too
