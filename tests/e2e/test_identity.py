"""Identity end to end: signaling is trusted for delivery only.

A compromised signaling service (``lab.mitm``: every frame between the client and the real
gateway passes through the test) swaps fingerprints, strips or forges credentials, answers
in the homelab's name and replays offers; each attempt fails at the daemon or at the client
with a clear error, and no data channel reaches a service. Then the scopes: a credential
opens only its services, reaches only its homelabs, and stops working once revoked or
expired, without a restart.
"""

import asyncio
import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect

from homelab_p2p.authenticate import offer_signal
from lab import credential, credential_file, token
from lab.bridge import EchoService, LoggedProcess, client_args, echo_round_trip
from lab.hostile import next_signal, offer_sdp, open_client, signal
from lab.mitm import TO_CLIENT, TO_HOMELAB, Relay, TamperingSignaling
from lab.netns import venv_bin
from p2p_protocol.identity import answer_statement, parse_certificate
from p2p_runtime.identity import Credential
from tests.e2e.conftest import GATEWAY_IP, LanLab

ECHO_PORT = 7007
SERVICES = {"echo7": f"tcp://127.0.0.1:{ECHO_PORT}"}


async def run_client(
    lan: LanLab,
    command: list[str],
    url: str,
    held: Credential | None = None,
    stdin: str | None = None,
) -> tuple[int, str]:
    """``homelab-p2p COMMAND ...`` in the client's namespace: its status and stderr."""
    identity = ["--credential-file", str(credential_file(held))] if held else []
    argv = [venv_bin("homelab-p2p"), *command, *client_args(url, *identity)]
    done = await asyncio.to_thread(lan.client.run, *argv, check=False, input=stdin)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def signal_data(message: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The signal of ``kind`` a sendSignal frame carries, if it does."""
    data = message.get("data")
    if message.get("action") == "sendSignal" and isinstance(data, dict):
        return data if data.get("type") == kind else None
    return None


def other_fingerprint(sdp: str) -> str:
    """``sdp`` with its sha-256 fingerprint replaced by one of the attacker's certificate."""
    fake = ":".join(["AB"] * 32)
    return re.sub(r"a=fingerprint:sha-256 [0-9A-F:]+", f"a=fingerprint:sha-256 {fake}", sdp)


def assert_no_service_reached(daemon: LoggedProcess) -> None:
    log = daemon.log()
    assert "opened 'echo7'" not in log, log
    assert "connected over" not in log, log


async def test_a_swapped_fingerprint_in_the_offer_is_refused_by_the_daemon(lan: LanLab) -> None:
    async def swap(direction: str, message: dict[str, Any], _: Relay) -> dict[str, Any]:
        offer = signal_data(message, "offer") if direction == TO_HOMELAB else None
        if offer is not None:
            offer["sdp"] = other_fingerprint(offer["sdp"])
        return message

    daemon = await lan.start_daemon(SERVICES)
    async with TamperingSignaling(lan.client, (GATEWAY_IP, 8765), swap) as signaling:
        status, stderr = await run_client(lan, ["pipe", "echo"], signaling.url, stdin="hi")
    assert status != 0
    assert "the homelab refused the connection (unauthorized)" in stderr, stderr
    assert "its proof is not client 'e2e'" in stderr, stderr
    await daemon.logged(r"\[WARNING\] Refused the offer of \S+: its proof is not client 'e2e'")
    assert signaling.errors == []
    assert_no_service_reached(daemon)


async def test_an_offer_stripped_of_its_credential_is_refused(lan: LanLab) -> None:
    async def strip(direction: str, message: dict[str, Any], _: Relay) -> dict[str, Any]:
        offer = signal_data(message, "offer") if direction == TO_HOMELAB else None
        if offer is not None:
            del offer["identity"]
        return message

    daemon = await lan.start_daemon(SERVICES)
    async with TamperingSignaling(lan.client, (GATEWAY_IP, 8765), strip) as signaling:
        status, stderr = await run_client(lan, ["pipe", "echo"], signaling.url, stdin="hi")
    assert status != 0
    assert 'the offer was refused: it carries no credential (no "identity" field)' in stderr
    assert_no_service_reached(daemon)


async def test_a_swapped_fingerprint_in_the_answer_is_refused_by_the_client(lan: LanLab) -> None:
    async def swap(direction: str, message: dict[str, Any], _: Relay) -> dict[str, Any]:
        answer = signal_data(message, "answer") if direction == TO_CLIENT else None
        if answer is not None:
            answer["sdp"] = other_fingerprint(answer["sdp"])
        return message

    daemon = await lan.start_daemon(SERVICES)
    async with TamperingSignaling(lan.client, (GATEWAY_IP, 8765), swap) as signaling:
        status, stderr = await run_client(lan, ["pipe", "echo"], signaling.url, stdin="hi")
    assert status != 0
    assert "identity: the answer is not from homelab 'laptop': its proof is not homelab" in stderr
    assert "Nothing was sent to it" in stderr
    assert_no_service_reached(daemon)


async def test_an_answer_forged_in_the_homelabs_name_is_refused_by_the_client(
    lan: LanLab,
) -> None:
    """Signaling keeps the offer and answers itself, certified by an operator of its own."""
    impostor = credential("homelab", "laptop", operator=Ed25519PrivateKey.generate())

    async def answer_itself(
        direction: str, message: dict[str, Any], relay: Relay
    ) -> dict[str, Any] | None:
        offer = signal_data(message, "offer") if direction == TO_HOMELAB else None
        if offer is None:
            return message
        await forge_answer(relay, offer, impostor)
        return None  # the homelab never sees the offer

    daemon = await lan.start_daemon(SERVICES)
    async with TamperingSignaling(lan.client, (GATEWAY_IP, 8765), answer_itself) as signaling:
        status, stderr = await run_client(lan, ["pipe", "echo"], signaling.url, stdin="hi")
    assert status != 0
    assert "identity: the answer is not from homelab 'laptop'" in stderr, stderr
    assert "not signed by this homelab's operator key" in stderr, stderr
    assert signaling.errors == []
    assert "offer received" not in daemon.log()


async def forge_answer(relay: Relay, offer: dict[str, Any], impostor: Credential) -> None:
    """Answer ``offer`` to the client in the homelab's name, as well as signaling can."""
    client = parse_certificate(offer["identity"]["certificate"]).certificate
    sdp = offer_sdp()
    proof = impostor.sign(answer_statement(client.id, offer["sdp"], sdp))
    await relay.to_client(
        {
            "action": "sendSignal",
            "from": "homelab-connection",
            "to": "me",
            "data": {"type": "answer", "sdp": sdp, "identity": proof.to_json()},
        }
    )


async def test_a_replayed_offer_is_refused(lan: LanLab) -> None:
    """Signaling keeps a genuine offer and sends it again from a connection of its own."""
    captured: list[dict[str, Any]] = []

    async def record(direction: str, message: dict[str, Any], _: Relay) -> dict[str, Any]:
        offer = signal_data(message, "offer") if direction == TO_HOMELAB else None
        if offer is not None:
            captured.append(json.loads(json.dumps(offer)))
        return message

    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(SERVICES)
        async with TamperingSignaling(lan.client, (GATEWAY_IP, 8765), record) as signaling:
            status, stderr = await run_client(lan, ["pipe", "echo"], signaling.url, stdin="hi")
        assert status == 0, stderr
        assert len(captured) == 1
        async with await open_client(lan.client, GATEWAY_IP, name="replayer") as ws:
            await signal(ws, captured[0])
            refusal = await next_signal(ws)
    assert refusal["code"] == "unauthorized", refusal
    assert "this offer was answered before (a replay)" in refusal["message"]
    await daemon.logged(r"Refused the offer of \S+: this offer was answered before \(a replay\)")


async def test_a_homelab_token_and_credential_cannot_act_as_a_client(lan: LanLab) -> None:
    daemon = await lan.start_daemon(SERVICES)
    nas = credential("homelab", "nas")
    # Signaling refuses a homelab's connection that offers to another homelab...
    sock = lan.client.socket_connected(GATEWAY_IP, 8765)
    url = f"ws://{GATEWAY_IP}:8765/prod?token={token('homelab', 'nas')}"
    async with connect(url, sock=sock, ping_interval=None) as ws:
        await signal(ws, offer_signal(nas, "laptop", offer_sdp()))
        refused = await next_signal(ws)
    assert refused["error"] == "unauthorized", refused
    assert "homelab 'nas' may only answer clients that contacted it" in refused["message"]
    # ...and the daemon refuses a homelab's credential, whoever relays it.
    async with await open_client(lan.client, GATEWAY_IP, name="relayed") as ws:
        await signal(ws, offer_signal(nas, "laptop", offer_sdp()))
        refusal = await next_signal(ws)
    assert refusal["code"] == "unauthorized", refusal
    assert "its certificate is a homelab's, not a client's" in refusal["message"]
    assert_no_service_reached(daemon)


async def test_a_credential_opens_only_its_services(lan: LanLab) -> None:
    only_web = credential("client", "alice", services=("web",))
    daemon = await lan.start_daemon(SERVICES)
    # The CLI knows its credential's scope and says so without asking the homelab.
    for command in (["pipe", "echo7"], ["forward", "echo7", "--listen", "127.0.0.1:0"]):
        status, stderr = await run_client(lan, command, lan.signaling_url, only_web, "hi")
        assert status != 0
        assert (
            "channel: your credential (alice) does not allow service 'echo7'; it allows: web"
        ) in stderr, stderr
    assert "Refused data channel" not in daemon.log()
    # A client that asks anyway (stock aiortc, lab/attacker.py) is refused by the daemon.
    argv = [
        venv_bin("python"), "-m", "lab.attacker", "channels", lan.signaling_url,
        str(credential_file(only_web)), "--service", "echo7", "--count", "1",
    ]  # fmt: skip
    done = await asyncio.to_thread(lan.client.run, *argv, check=False, input="")
    assert done.stdout.splitlines()[-1] == '{"open": 0, "refused": {"forbidden": 1}}', done
    await daemon.logged(
        r"Refused data channel 'echo7' from \S+: the credential of client 'alice' "
        r"\(credential [0-9a-f]{16}\) does not list it \(homelabs laptop; services web\)"
    )


async def test_a_credential_reaches_only_its_homelabs(lan: LanLab) -> None:
    for_nas = credential("client", "bob", homelabs=("nas",))
    await lan.start_daemon(SERVICES)
    status, stderr = await run_client(lan, ["pipe", "echo"], lan.signaling_url, for_nas, stdin="hi")
    assert status != 0
    assert "the token of client 'bob' does not name 'laptop'" in stderr, stderr
    # A signaling service that relays it anyway (its token says laptop): the daemon refuses.
    relayed = dataclasses.replace(for_nas, signaling_token=token("client", "bob"))
    status, stderr = await run_client(lan, ["pipe", "echo"], lan.signaling_url, relayed, stdin="hi")
    assert status != 0
    assert "does not name homelab 'laptop' (it names nas)" in stderr, stderr


async def test_an_expired_credential_is_refused_with_a_message_that_says_so(lan: LanLab) -> None:
    old = credential("client", "carol", ttl=3600, now=time.time() - 7200)
    old = dataclasses.replace(old, signaling_token=token("client", "carol"))
    await lan.start_daemon(SERVICES)
    status, stderr = await run_client(lan, ["pipe", "echo"], lan.signaling_url, old, stdin="hi")
    assert status != 0
    assert re.search(r"the credential of client 'carol' \(credential \w+\) expired at ", stderr)
    assert "ask the operator for a new one" in stderr


async def test_a_revocation_closes_the_peer_and_refuses_the_next_offer(
    lan: LanLab, tmp_path: Path
) -> None:
    """The daemon reads the list again when it changes: no restart."""
    revoked = tmp_path / "revoked.json"
    revoked.write_text('{"revoked": []}')
    laptop = credential("client", "dave")
    async with EchoService(lan.homelab, ECHO_PORT):
        daemon = await lan.start_daemon(SERVICES, revocation_file=str(revoked))
        forward, port = await lan.start_forward(
            "echo7", "--credential-file", str(credential_file(laptop))
        )
        assert await echo_round_trip(lan.client, port, 64 * 1024)
        lost = {"id": laptop.certificate.id, "name": "dave", "revoked_at": "now"}
        revoked.write_text(json.dumps({"revoked": [lost]}))
        await daemon.logged(
            r"\[WARNING\] Peer \S+: closing, the credential of client 'dave' \(credential "
            rf"{laptop.certificate.id}\) was revoked"
        )
        forward.stop()
        status, stderr = await run_client(
            lan, ["pipe", "echo"], lan.signaling_url, laptop, stdin="hi"
        )
    assert status != 0
    assert f"the credential of client 'dave' (credential {laptop.certificate.id}) was revoked" in (
        stderr
    )
    assert "Revocation list" in daemon.log()
