"""The doctor's pieces that need no network: the URL's form, and how results are printed."""

import io
import json

import pytest

from homelab_p2p.client import ClientOptions
from homelab_p2p.doctor import guide, report
from homelab_p2p.doctor.checks import Doctor, Result
from lab import credential
from p2p_webrtc import IcePolicy


def options(url: str) -> ClientOptions:
    return ClientOptions(
        signaling_url=url,
        token="t",
        target="laptop",
        credential=credential(),
        ice=IcePolicy(),
        timeout=1,
    )


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("https://abc.example/prod", "'https://abc.example/prod' is not ws[s]://HOST[:PORT]/STAGE"),
        ("ws://gateway.lan:8765", "'ws://gateway.lan:8765' is not ws[s]://HOST[:PORT]/STAGE"),
        (
            "wss://abc123.execute-api.us-east-1.amazonaws.com",
            "is not ws[s]://HOST[:PORT]/STAGE",
        ),
        (
            "wss://abc123.execute-api.amazonaws.com/prod",
            "looks like AWS but not wss://<api-id>.execute-api.<region>.amazonaws.com/<stage>",
        ),
    ],
)
async def test_a_malformed_url_fails_step_1_before_any_lookup(url: str, detail: str) -> None:
    result = await Doctor(options(url)).signaling_url()
    assert result.status == "fail"
    assert detail in result.detail
    assert result.row == guide.WEBSOCKET_FAILED


def test_the_text_report_marks_each_check_and_prints_the_guides_row() -> None:
    results = [
        Result(1, "Signaling URL", "ok", "a local gateway"),
        Result(4, "Target", "fail", guide.TARGET_NOT_CONNECTED.error, guide.TARGET_NOT_CONNECTED),
        Result(5, "STUN servers", "skip", "none configured"),
    ]
    out = io.StringIO()
    report.text(results, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "✓ 1 Signaling URL  a local gateway"
    assert lines[1] == f"✗ 4 Target         {guide.TARGET_NOT_CONNECTED.error}"
    assert lines[2] == f"      error:    {guide.TARGET_NOT_CONNECTED.error}"
    assert lines[3] == f"      cause:    {guide.TARGET_NOT_CONNECTED.cause}"
    assert lines[5] == "- 5 STUN servers   none configured"
    assert lines[-1] == "homelab-p2p doctor: 1 check(s) failed"

    out = io.StringIO()
    report.as_json(results, "ws://x/prod", "laptop", out)
    document = json.loads(out.getvalue())
    assert document["ok"] is False
    assert document["checks"][1]["guide"]["solution"] == guide.TARGET_NOT_CONNECTED.solution
    assert "guide" not in document["checks"][0]
