"""End-to-end identity, piece by piece: certificates, proofs, the daemon's checks, revocation."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from homelab_p2p.authenticate import check_answer, offer_signal
from homelab_server.authorize import PeerAuthorizer
from lab import OPERATOR, credential, credential_file
from lab.hostile import offer_sdp
from p2p_protocol import b64url, signals
from p2p_protocol.identity import IdentityError, answer_statement, sdp_fingerprints
from p2p_runtime.identity import load_credential, parse_credential, verify_certificate
from p2p_runtime.revocation import RevocationList

CLI = Path(sys.executable).with_name("homelab-p2p")
FINGERPRINT = re.compile(r"a=fingerprint:sha-256 [0-9A-F:]+")


def authorizer(tmp_path: Path, revoked: list[str] | None = None) -> PeerAuthorizer:
    listed = tmp_path / "revoked.json"
    listed.write_text(json.dumps({"revoked": [{"id": i} for i in revoked or []]}))
    return PeerAuthorizer(credential("homelab", "laptop"), RevocationList(listed))


# --- certificates ------------------------------------------------------------------------


def test_a_certificate_says_what_the_operator_issued() -> None:
    alice = credential("client", "alice", homelabs=("laptop", "nas"), services=("ssh", "web"))
    certificate = verify_certificate(OPERATOR.public_key(), alice.certificate_text, "client")
    assert (certificate.name, certificate.homelabs, certificate.services) == (
        "alice",
        ("laptop", "nas"),
        ("ssh", "web"),
    )
    assert certificate.may_reach("nas")
    assert not certificate.may_reach("desk")
    assert certificate.may_open("web")
    assert not certificate.may_open("telnet")
    assert credential(services=("*",)).certificate.may_open("anything")
    # What the CLI and the daemon both say, and echo open to every client.
    assert certificate.forbids("telnet") == (
        "your credential (alice) does not allow service 'telnet'; it allows: ssh, web"
    )
    assert certificate.forbids("web") == certificate.forbids("echo") == ""


def with_signature_flipped(text: str) -> str:
    """The same certificate with one bit of its signature changed, still canonical base64url."""
    head, _, signature = text.rpartition(".")
    raw = bytearray(b64url.decode(signature, "signature"))
    raw[0] ^= 1
    return f"{head}.{b64url.encode(bytes(raw))}"


def with_unused_bit_set(text: str) -> str:
    """The same signature bytes spelled another way: lenient decoders ignore this bit."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(text[-1])
    assert last % 4 == 0, "a 64-byte signature leaves the last character's two low bits unused"
    return text[:-1] + alphabet[last + 1]


@pytest.mark.parametrize(
    ("alter", "why"),
    [
        (with_signature_flipped, "not signed by this"),
        (with_unused_bit_set, "not canonical base64url"),
        (lambda t: t.replace("hpc1.", "hpc2."), "is not a hpc1.<payload>.<signature>"),
        (lambda t: t + ".x", "is not a hpc1.<payload>.<signature>"),
        (lambda t: "é" + t, "ASCII"),
        (lambda t: "", "no certificate was given"),
    ],
)
def test_an_altered_certificate_is_refused(alter: object, why: str) -> None:
    text = credential().certificate_text
    with pytest.raises(IdentityError, match=re.escape(why)):
        verify_certificate(OPERATOR.public_key(), alter(text), "client")  # type: ignore[operator]


def test_a_payload_respelled_or_reissued_by_another_operator_is_refused() -> None:
    text = credential().certificate_text
    version, payload, signature = text.split(".")
    claims = json.loads(b64url.decode(payload, "payload"))
    spaced = b64url.encode(json.dumps(claims).encode())  # same claims, another spelling
    with pytest.raises(IdentityError, match="not in its canonical form"):
        verify_certificate(OPERATOR.public_key(), f"{version}.{spaced}.{signature}", "client")
    other = credential(operator=Ed25519PrivateKey.generate())
    with pytest.raises(IdentityError, match="not signed by this homelab's operator key"):
        verify_certificate(OPERATOR.public_key(), other.certificate_text, "client")


def test_kind_expiry_and_revocation_are_checked_in_that_order() -> None:
    homelab = credential("homelab", "laptop")
    with pytest.raises(IdentityError, match="its certificate is a homelab's, not a client's"):
        verify_certificate(OPERATOR.public_key(), homelab.certificate_text, "client")
    old = credential(ttl=60, now=time.time() - 120)
    with pytest.raises(IdentityError, match=r"expired at .* ask the operator for a new one"):
        verify_certificate(OPERATOR.public_key(), old.certificate_text, "client")
    lost = credential()
    with pytest.raises(IdentityError, match="was revoked"):
        verify_certificate(
            OPERATOR.public_key(),
            lost.certificate_text,
            "client",
            frozenset({lost.certificate.id}),
        )


def test_a_credential_file_is_whole_or_refused(tmp_path: Path) -> None:
    held = credential()
    path = credential_file(held, tmp_path / "alice.json")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_credential(path).certificate == held.certificate
    other_key = credential()
    fields = json.loads(path.read_text())
    fields["key"] = json.loads(other_key.to_json())["key"]
    with pytest.raises(IdentityError, match="its key does not belong to its certificate"):
        parse_credential(json.dumps(fields), "alice.json")
    with pytest.raises(IdentityError, match="is not a credential"):
        parse_credential("[]", "alice.json")


# --- the daemon's check of an offer --------------------------------------------------------


def test_fingerprints_are_normalized_and_every_one_counts() -> None:
    sdp = (
        "v=0\r\na=fingerprint:SHA-256 ab:cd\r\n"
        "a=fingerprint:sha-256 AB:CD\r\na=fingerprint:sha-512 01\r\n"
    )
    assert sdp_fingerprints(sdp) == ("sha-256 AB:CD", "sha-512 01")


def test_a_genuine_offer_is_admitted_once(tmp_path: Path) -> None:
    checker = authorizer(tmp_path)
    offer = offer_signal(credential("client", "alice"), "laptop", offer_sdp())
    parsed = signals.parse_signal(offer)
    assert checker.check_offer(parsed.identity, parsed.sdp).name == "alice"
    with pytest.raises(IdentityError, match="a replay"):
        checker.check_offer(parsed.identity, parsed.sdp)


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (
            lambda o: o | {"sdp": FINGERPRINT.sub("a=fingerprint:sha-256 AA:BB", o["sdp"])},
            "over this very SDP",
        ),
        (lambda o: o | {"sdp": o["sdp"] + "a=fingerprint:sha-1 AA:BB\r\n"}, "over this very SDP"),
        (lambda o: {k: v for k, v in o.items() if k != "identity"}, "carries no credential"),
        (
            lambda o: o | {"identity": o["identity"] | {"at": o["identity"]["at"] + 1}},
            "over this very SDP",
        ),
        (lambda o: o | {"identity": o["identity"] | {"at": 1}}, "check the client's clock"),
        (lambda o: o | {"identity": "x"}, '"identity" field is not an object'),
    ],
    ids=["swapped", "added", "stripped", "retimed", "stale", "garbage"],
)
def test_an_altered_offer_is_refused(tmp_path: Path, tamper: object, why: str) -> None:
    offer = offer_signal(credential(), "laptop", offer_sdp())
    parsed = signals.parse_signal(tamper(offer))  # type: ignore[operator]
    with pytest.raises(IdentityError, match=re.escape(why)):
        authorizer(tmp_path).check_offer(parsed.identity, parsed.sdp)


def test_an_offer_for_another_homelab_or_from_a_revoked_client_is_refused(tmp_path: Path) -> None:
    for_nas = credential(homelabs=("nas",))
    offer = signals.parse_signal(offer_signal(for_nas, "laptop", offer_sdp()))
    with pytest.raises(IdentityError, match=r"does not name homelab 'laptop' \(it names nas\)"):
        authorizer(tmp_path).check_offer(offer.identity, offer.sdp)
    lost = credential()
    offer = signals.parse_signal(offer_signal(lost, "laptop", offer_sdp()))
    checker = authorizer(tmp_path, revoked=[lost.certificate.id])
    with pytest.raises(IdentityError, match="was revoked"):
        checker.check_offer(offer.identity, offer.sdp)
    assert checker.still_valid(lost.certificate) is not None
    assert checker.still_valid(credential().certificate) is None


def test_the_client_accepts_only_its_homelabs_answer_to_its_offer(tmp_path: Path) -> None:
    alice = credential()
    checker = authorizer(tmp_path)
    offer, answer = offer_sdp(), offer_sdp()
    proof = checker.prove_answer(alice.certificate, offer, answer)
    good = signals.Signal("answer", sdp=answer, identity=proof.to_json())
    assert check_answer(alice, "laptop", offer, good).name == "laptop"
    with pytest.raises(IdentityError, match="homelab 'laptop''s, not 'nas''s"):
        check_answer(alice, "nas", offer, good)
    swapped = signals.Signal("answer", sdp=offer_sdp(), identity=proof.to_json())
    with pytest.raises(IdentityError, match="over this very SDP"):
        check_answer(alice, "laptop", offer, swapped)
    with pytest.raises(IdentityError, match="over this very SDP"):
        check_answer(alice, "laptop", offer_sdp(), good)  # the answer to another offer
    impostor = credential("homelab", "laptop", operator=Ed25519PrivateKey.generate())
    forged = impostor.sign(answer_statement(alice.certificate.id, offer, answer))
    with pytest.raises(IdentityError, match="not signed by this homelab's operator key"):
        check_answer(
            alice, "laptop", offer, signals.Signal("answer", answer, identity=forged.to_json())
        )


# --- revocation ------------------------------------------------------------------------------


def test_the_revocation_list_is_read_again_when_it_changes(tmp_path: Path) -> None:
    listed = tmp_path / "revoked.json"
    listed.write_text('{"revoked": []}')
    revocations = RevocationList(listed)
    assert revocations.current() == frozenset()
    listed.write_text('{"revoked": [{"id": "0123456789abcdef", "name": "lost"}]}')
    os.utime(listed, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert revocations.current() == {"0123456789abcdef"}
    listed.write_text("not json, and longer than before")  # spoiled: the last list stays
    assert revocations.current() == {"0123456789abcdef"}
    listed.unlink()
    assert revocations.current() == {"0123456789abcdef"}


# --- homelab-p2p credential ------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(CLI), "credential", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_operator_issues_shows_and_revokes_credentials(tmp_path: Path) -> None:
    key = tmp_path / "operator.key"
    created = cli("new-operator", "--out", str(key))
    assert created.returncode == 0
    assert created.stdout.startswith("hpk1.")
    assert key.stat().st_mode & 0o777 == 0o600
    assert cli("operator-key", "--operator-key", str(key)).stdout == created.stdout
    assert cli("new-operator", "--out", str(key)).returncode == 2  # never overwritten
    out = tmp_path / "alice.json"
    issued = cli(
        "issue", "--operator-key", str(key), "--kind", "client", "--name", "alice",
        "--homelab", "laptop", "--service", "web", "--ttl", "30d", "--out", str(out),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    assert "client 'alice'" in issued.stdout
    assert "services web" in issued.stdout
    shown = json.loads(cli("show", str(out), "--json").stdout)
    assert shown["homelabs"] == ["laptop"]
    assert shown["services"] == ["web"]
    assert shown["operator"] == created.stdout.strip()
    assert "key" not in shown
    assert shown["signaling_token"] is False  # issued without signaling's secret
    listed = tmp_path / "revoked.json"
    assert cli("revoke", "--list", str(listed), "--credential-file", str(out)).returncode == 0
    assert RevocationList(listed).current() == {shown["id"]}
    assert "revoked already" in cli("revoke", "--list", str(listed), "--id", shown["id"]).stdout


def test_bad_requests_are_one_sentence(tmp_path: Path) -> None:
    missing = cli(
        "issue", "--operator-key", str(tmp_path / "none.key"), "--kind", "client",
        "--name", "a", "--homelab", "laptop", "--service", "web", "--out", str(tmp_path / "a"),
    )  # fmt: skip
    assert missing.returncode == 2
    assert "cannot read the operator key" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    key = tmp_path / "operator.key"
    cli("new-operator", "--out", str(key))
    unscoped = cli(
        "issue", "--operator-key", str(key), "--kind", "client", "--name", "a",
        "--out", str(tmp_path / "a"),
    )  # fmt: skip
    assert unscoped.returncode == 2
    assert "names at least one homelab and one service" in unscoped.stderr
