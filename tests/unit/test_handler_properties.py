"""No input raises out of the handler, and every reply it sends is well formed.

2,200 generated message bodies and events run through the handler with moto's in-process
management API; every message posted to any connection is checked against the protocol.
"""

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

from lab import SECRET, token
from p2p_protocol.messages import BACKEND_UNREACHABLE_MESSAGE, ErrorCode
from p2p_protocol.names import is_valid_name
from p2p_protocol.tokens import issue_token
from signaling_lambda.app import SignalingApp
from signaling_lambda.settings import Settings
from tests.unit.aws_support import DEFAULT_ACCOUNT_ID, ENDPOINT, REGION, event

CONNECTIONS = ["CLIENT=", "HOME=", "OTHER=", "laptop"]
ERROR_CODES = {code.value for code in ErrorCode}
REPLY_ACTIONS = {"sendSignal", "connected", "registered", "pong"}


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def harness() -> Iterator[tuple[SignalingApp, Recorder]]:
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        # Generated events carry any domainName: the endpoint is pinned to one moto intercepts,
        # so no generated value can send a request off this machine.
        settings = Settings(registry_backend="memory", secret=SECRET, management_endpoint=ENDPOINT)
        app = SignalingApp.from_settings(settings, session)
        recorder = Recorder()
        logger = logging.getLogger("signaling_lambda")
        logger.addHandler(recorder)
        previous_level = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            yield app, recorder
        finally:
            logger.removeHandler(recorder)
            logger.setLevel(previous_level)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
tokens = st.sampled_from(
    [
        token("homelab", "laptop"),
        token("homelab", "nas"),
        token("client", "laptop"),
        token("homelab", "laptop", 60, now=time.time() - 3600),
        issue_token(b"z" * 40, "homelab", "laptop", 3600),
        "hp1.x.y",
    ]
) | st.text(max_size=40)
message_objects = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["sendSignal", "register", "ping", "$connect", "nope"])
        | json_values,
        "to": st.sampled_from([*CONNECTIONS, "me", "nas", "x" * 300]) | json_values,
        "data": st.sampled_from(["identify", "x" * 70000, {"type": "offer", "sdp": "v=0"}])
        | json_values,
        "name": st.sampled_from(["laptop", "nas", "bad name", "x" * 70]) | json_values,
        "token": tokens | json_values,
    },
)
bodies = st.one_of(
    message_objects.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(
        ["[" * 3000, '{"action":"sendSignal","to":"me","data":' + "[" * 40 + "]" * 40 + "}"]
    ),
)
routes = st.sampled_from(
    ["$connect", "$disconnect", "sendSignal", "register", "ping", "$default", "odd"]
)


def structured_events() -> st.SearchStrategy[dict[str, Any]]:
    def build(
        route: str, sender: str, body: str | None, base64: bool, query: Any, opened_with: Any
    ) -> dict[str, Any]:
        # ``opened_with``: the token the connection was authorized with (its claims ride along)
        result = event(
            route, sender, body, query, opened_with if isinstance(opened_with, str) else None
        )
        result["isBase64Encoded"] = base64
        return result

    return st.builds(
        build,
        routes,
        st.sampled_from(CONNECTIONS),
        st.none() | bodies,
        st.booleans(),
        st.none()
        | st.dictionaries(st.sampled_from(["token", "x"]), tokens, max_size=2)
        | json_values,
        st.none() | tokens,
    )


def damaged_events() -> st.SearchStrategy[Any]:
    """Events with parts missing or of the wrong type, and things that are no events at all."""

    def damage(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
        base["requestContext"][key] = value
        return base

    return st.one_of(
        json_values,
        st.builds(
            damage,
            structured_events(),
            st.sampled_from(["routeKey", "connectionId", "domainName", "stage"]),
            json_values,
        ),
        st.dictionaries(
            st.sampled_from(["requestContext", "body", "isBase64Encoded"]), json_values
        ),
    )


def posted_messages() -> dict[str, list[Any]]:
    backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
    decoder = json.JSONDecoder()
    result: dict[str, list[Any]] = {}
    for connection_id, connection in backend.connections.items():
        raw = connection.data.decode("utf-8")  # every reply must be valid UTF-8 text
        messages, position = [], 0
        while position < len(raw):
            message, position = decoder.raw_decode(raw, position)
            messages.append(message)
        result[connection_id] = messages
    return result


def check_reply(message: Any) -> None:
    assert isinstance(message, dict), message
    if "error" in message:
        assert message["error"] in ERROR_CODES, message
        assert isinstance(message["message"], str), message
        assert message["message"], message
        if message["error"] == ErrorCode.BACKEND_UNREACHABLE:
            assert message["message"] == BACKEND_UNREACHABLE_MESSAGE
            assert isinstance(message["target"], str)
        return
    action = message.get("action")
    assert action in REPLY_ACTIONS, message
    if action == "sendSignal":
        assert set(message) == {"action", "from", "to", "data"}, message
        assert isinstance(message["from"], str)
        assert isinstance(message["to"], str)
    elif action == "connected":
        assert message["to"] == "me"
        assert message["from"] == message["data"]
    elif action == "registered":
        assert is_valid_name(message["name"])
        assert isinstance(message["connectionId"], str)
    else:
        assert isinstance(message["connectionId"], str)


def run_and_check(app: SignalingApp, recorder: Recorder, invocation: Any) -> None:
    apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION].connections.clear()
    recorder.records.clear()
    response = app.handle(invocation)
    assert isinstance(response, dict)
    assert response["statusCode"] in (200, 400, 401), response
    for messages in posted_messages().values():
        for message in messages:
            check_reply(message)
    for record in recorder.records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR or "does not exist" in record.getMessage(), (
            record.getMessage()
        )


@settings(
    max_examples=1200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(body=bodies, route=routes, sender=st.sampled_from(CONNECTIONS))
def test_any_body_on_any_route(
    harness: tuple[SignalingApp, Recorder], body: str, route: str, sender: str
) -> None:
    app, recorder = harness
    run_and_check(app, recorder, event(route, sender, body, {"token": token()}))


@settings(
    max_examples=1000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(invocation=structured_events() | damaged_events())
def test_any_event(harness: tuple[SignalingApp, Recorder], invocation: Any) -> None:
    app, recorder = harness
    run_and_check(app, recorder, invocation)
