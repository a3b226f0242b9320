"""Failures are told apart by their codes and statuses, never by their text."""

from typing import Any

import pytest

from homelab_p2p import commands
from homelab_p2p.client import (
    ClientError,
    ClientOptions,
    ClientStep,
    Negotiation,
    TargetNotConnected,
)
from homelab_p2p.doctor import guide
from homelab_p2p.doctor.checks import Doctor
from lab import credential
from p2p_protocol.messages import (
    BACKEND_UNREACHABLE_MESSAGE,
    INTERNAL_ERROR_MESSAGE,
    ErrorCode,
    error_code,
    error_reply,
    internal_error_reply,
    is_internal_error,
)
from p2p_webrtc import IcePolicy
from signaling_client.link import (
    Link,
    SignalingError,
    SignalingRefused,
    SignalingUnreachable,
    _refusal,
    refused_by_reply,
)

OPTIONS = ClientOptions(
    signaling_url="ws://gateway.lan:8765/prod",
    token="t",
    target="laptop",
    credential=credential(),
    ice=IcePolicy(),
)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_wire_code_is_read_back_from_its_reply(code: ErrorCode) -> None:
    assert error_code(error_reply(code, "text")) is code


@pytest.mark.parametrize("reply", [{"error": "no_such_code"}, {"error": 3}, {"message": "x"}, {}])
def test_a_reply_without_a_known_code_has_none(reply: dict[str, Any]) -> None:
    assert error_code(reply) is None


def test_api_gateways_internal_error_is_recognised_without_a_code() -> None:
    reply = internal_error_reply("conn-1", "req-1")
    assert reply == {
        "message": INTERNAL_ERROR_MESSAGE,
        "connectionId": "conn-1",
        "requestId": "req-1",
    }
    assert is_internal_error(reply)
    assert error_code(reply) is None
    assert not is_internal_error(error_reply(ErrorCode.BAD_REQUEST, "Internal server errors"))


@pytest.mark.parametrize("status", [401, 403, 500])
def test_a_refused_handshake_carries_its_http_status(status: int) -> None:
    error = _refusal("ws://gateway.lan:8765/prod", status)
    assert isinstance(error, SignalingRefused)
    assert error.http_status == status
    assert error.code is None
    assert f"HTTP {status}" in str(error)  # the text people read stays as it was


def test_an_error_reply_to_a_request_carries_its_code() -> None:
    error = refused_by_reply(error_reply(ErrorCode.UNKNOWN_ACTION, "Unknown message format"))
    assert error.code is ErrorCode.UNKNOWN_ACTION
    assert error.http_status is None
    assert str(error) == "unknown_action: Unknown message format"
    assert refused_by_reply({"error": "from_the_future", "message": "?"}).code is None


def report_of(error: ClientError, capfd: pytest.CaptureFixture[str]) -> str:
    commands.report(error)  # on file descriptor 2, as the agent writes to its caller's
    return capfd.readouterr().err


def test_the_guides_message_is_printed_alone_and_others_name_their_step(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert report_of(TargetNotConnected("laptop"), capfd).startswith(
        f"homelab-p2p: {BACKEND_UNREACHABLE_MESSAGE}\n"
    )
    assert report_of(ClientError(ClientStep.ICE, "no path"), capfd) == "homelab-p2p: ICE: no path\n"
    # Text that looks like the guide's is not the guide's message: the code decides.
    lookalike = ClientError(ClientStep.SIGNALING, "The target said no")
    assert report_of(lookalike, capfd) == "homelab-p2p: signaling: The target said no\n"


async def answer_error(message: dict[str, Any]) -> BaseException | None:
    negotiation = Negotiation(OPTIONS.target)
    await negotiation.on_error(message)
    return negotiation.answer.exception()


async def test_the_client_tells_an_absent_target_by_its_code() -> None:
    absent = await answer_error(error_reply(ErrorCode.BACKEND_UNREACHABLE, "whatever", target="x"))
    assert isinstance(absent, TargetNotConnected)
    assert absent.code is ErrorCode.BACKEND_UNREACHABLE
    limited = await answer_error(error_reply(ErrorCode.RATE_LIMITED, "slow down"))
    assert isinstance(limited, ClientError)
    assert not isinstance(limited, TargetNotConnected)
    assert (limited.step, limited.code) == (ClientStep.SIGNALING, ErrorCode.RATE_LIMITED)
    failed = await answer_error(internal_error_reply("c", "r"))
    assert isinstance(failed, ClientError)
    assert failed.code is None
    assert str(failed) == f"the signaling service answered: {INTERNAL_ERROR_MESSAGE}"


@pytest.mark.parametrize(
    ("status", "row"),
    [(401, guide.TOKEN_REFUSED), (403, guide.WEBSOCKET_FAILED), (404, guide.WEBSOCKET_FAILED)],
)
async def test_the_handshake_row_follows_the_http_status(
    monkeypatch: pytest.MonkeyPatch, status: int, row: guide.Row
) -> None:
    async def refuse(*_: Any) -> None:
        raise _refusal(OPTIONS.signaling_url, status)

    monkeypatch.setattr(Link, "open", refuse)
    result = await Doctor(OPTIONS).handshake()
    assert (result.status, result.row) == ("fail", row)


class RefusingLink:
    """Answers every request with one error."""

    def __init__(self, error: SignalingError) -> None:
        self.error = error

    async def request(self, *_: Any, **__: Any) -> dict[str, Any]:
        raise self.error

    async def close(self) -> None:
        return None


def doctor_with(error: SignalingError, unsolicited: list[dict[str, Any]] | None = None) -> Doctor:
    doctor = Doctor(OPTIONS)
    doctor._link = RefusingLink(error)  # type: ignore[assignment]
    doctor._unsolicited = unsolicited or []
    return doctor


@pytest.mark.parametrize(
    ("error", "row"),
    [
        (refused_by_reply(error_reply(ErrorCode.UNKNOWN_ACTION, "x")), guide.UNKNOWN_FORMAT),
        (refused_by_reply(error_reply(ErrorCode.INVALID_JSON, "x")), guide.UNKNOWN_FORMAT),
        (refused_by_reply(error_reply(ErrorCode.RATE_LIMITED, "x")), guide.WEBSOCKET_FAILED),
        # Only the code counts: the guide's words in another error change nothing.
        (SignalingRefused("unknown_action: Unknown message format"), guide.WEBSOCKET_FAILED),
        (SignalingUnreachable("no answer"), guide.WEBSOCKET_FAILED),
    ],
)
async def test_the_echo_row_follows_the_error_code(error: SignalingError, row: guide.Row) -> None:
    result = await doctor_with(error).echo()
    assert (result.status, result.row) == ("fail", row)


async def test_an_internal_error_from_signaling_points_at_its_row() -> None:
    doctor = doctor_with(SignalingUnreachable("no answer"), [internal_error_reply("c", "r")])
    assert (await doctor.echo()).row == guide.INTERNAL_ERROR


async def test_the_target_row_follows_the_code_not_the_text() -> None:
    absent = refused_by_reply(error_reply(ErrorCode.BACKEND_UNREACHABLE, "gone", target="laptop"))
    result = await doctor_with(absent).target()
    assert (result.detail, result.row) == (BACKEND_UNREACHABLE_MESSAGE, guide.TARGET_NOT_CONNECTED)
    lookalike = SignalingRefused("bad_request: backend_unreachable is not a target")
    result = await doctor_with(lookalike).target()
    assert result.row == guide.WEBSOCKET_FAILED
