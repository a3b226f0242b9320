"""The management API answered in process: botocore builds, signs and parses as on AWS."""

from typing import Any

import boto3
import pytest

from signaling_gateway.inprocess import IN_PROCESS_ENDPOINT, InProcessManagementApi


class Gateway:
    """What a worker's transport hands to the gateway: posts, and calls it answers."""

    def __init__(self) -> None:
        self.open = {"OPEN="}
        self.posted: list[tuple[str, bytes]] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def post(self, connection_id: str, data: bytes) -> None:
        self.posted.append((connection_id, data))

    def call(self, op: str, args: tuple[Any, ...]) -> Any:
        self.calls.append((op, args))
        if args[0] not in self.open:
            return None if op == "get" else False
        return {"connectedAt": "2026-12-01T00:00:00.000Z"} if op == "get" else True


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


def client(gateway: Gateway, stage: str = "prod") -> Any:
    session = boto3.session.Session("id", "secret", region_name="us-east-1")
    made = session.client(
        "apigatewaymanagementapi", endpoint_url=IN_PROCESS_ENDPOINT.format(stage=stage)
    )
    api = InProcessManagementApi("prod", gateway.open, gateway.post, gateway.call)
    api.register(made.meta.events)
    return made


def test_a_post_to_an_open_connection_is_handed_to_the_gateway(gateway: Gateway) -> None:
    client(gateway).post_to_connection(ConnectionId="OPEN=", Data=b'{"a":1}')
    assert gateway.posted == [("OPEN=", b'{"a":1}')]
    assert gateway.calls == []  # a post waits for nothing


def test_a_post_to_another_connection_is_gone_and_hands_over_nothing(gateway: Gateway) -> None:
    made = client(gateway)
    with pytest.raises(made.exceptions.GoneException):
        made.post_to_connection(ConnectionId="CLOSED=", Data=b"x")
    assert gateway.posted == []


def test_over_128_kib_is_payload_too_large(gateway: Gateway) -> None:
    made = client(gateway)
    with pytest.raises(made.exceptions.PayloadTooLargeException):
        made.post_to_connection(ConnectionId="OPEN=", Data=b"x" * 131073)
    assert gateway.posted == []


def test_another_stage_is_forbidden(gateway: Gateway) -> None:
    made = client(gateway, stage="dev")
    with pytest.raises(made.exceptions.ForbiddenException):
        made.post_to_connection(ConnectionId="OPEN=", Data=b"x")


def test_get_and_delete_ask_the_gateway(gateway: Gateway) -> None:
    made = client(gateway)
    assert made.get_connection(ConnectionId="OPEN=")["ConnectedAt"].year == 2026
    made.delete_connection(ConnectionId="OPEN=")
    with pytest.raises(made.exceptions.GoneException):
        made.get_connection(ConnectionId="GONE=")
    assert gateway.calls == [
        ("get", ("OPEN=",)),
        ("delete", ("OPEN=",)),
        ("get", ("GONE=",)),
    ]
