"""The credential roles on the controller: client_credentials issues, renews and revokes the
clients' credentials; homelab_server issues the homelab's own and installs it with the
revocation list. Both run here, on this machine, with every path in a temporary directory."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab import SECRET
from p2p_protocol.tokens import verify_token
from p2p_runtime.identity import load_credential, operator_public_text
from tests.support.ansible import run_local_play

CLIENTS_PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - client_credentials
"""

IDENTITY_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: homelab_server
        tasks_from: identity.yml
"""

ALICE = {"name": "alice", "homelabs": ["laptop"], "services": ["web"]}
BOB = {"name": "bob", "homelabs": ["laptop", "nas"], "services": ["ssh"]}


def run(
    tmp_path: Path, play: str, *options: str, **variables: Any
) -> subprocess.CompletedProcess[str]:
    """``play`` with ``variables`` (JSON: lists stay lists) and ansible-playbook ``options``."""
    values = {"ansible_python_interpreter": sys.executable, **variables}
    (tmp_path / "vars.json").write_text(json.dumps(values))
    result = run_local_play(tmp_path, play, f"@{tmp_path / 'vars.json'}", options=options)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def clients(
    tmp_path: Path,
    *declared: dict[str, Any],
    options: tuple[str, ...] = (),
    with_secret: bool = True,
) -> str:
    """client_credentials for ``declared``, with signaling's secret known or (not
    ``with_secret``) not yet."""
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    result = run(
        tmp_path,
        CLIENTS_PLAY,
        *options,
        client_credentials_clients=list(declared),
        client_credentials_operator_key=str(tmp_path / "credentials" / "operator.key"),
        client_credentials_dir=str(tmp_path / "credentials" / "clients"),
        client_credentials_revocation_list=str(tmp_path / "credentials" / "revoked.json"),
        client_credentials_signing_secret_file=str(tmp_path / "secret") if with_secret else "",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def held(tmp_path: Path, name: str) -> dict[str, Any]:
    path = tmp_path / "credentials" / "clients" / f"{name}.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    credential = load_credential(path)
    certificate = credential.certificate
    claims = verify_token(SECRET, credential.signaling_token)
    assert (claims.role, claims.name, claims.homelabs) == ("client", name, certificate.homelabs)
    return {
        "id": certificate.id,
        "homelabs": list(certificate.homelabs),
        "services": list(certificate.services),
    }


def revoked(tmp_path: Path) -> list[str]:
    document = json.loads((tmp_path / "credentials" / "revoked.json").read_text())
    return [entry["id"] for entry in document["revoked"]]


def test_each_client_gets_its_scope_once_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    first = clients(tmp_path, ALICE, BOB)
    assert "issued alice" in first
    assert "issued bob" in first
    alice, bob = held(tmp_path, "alice"), held(tmp_path, "bob")
    assert (alice["homelabs"], alice["services"]) == (["laptop"], ["web"])
    assert (bob["homelabs"], bob["services"]) == (["laptop", "nas"], ["ssh"])
    operator_key = tmp_path / "credentials" / "operator.key"
    assert oct(operator_key.stat().st_mode & 0o777) == "0o600"
    key = operator_key.read_bytes()
    assert revoked(tmp_path) == []

    second = clients(tmp_path, ALICE, BOB)
    assert "changed=0" in second
    third = clients(tmp_path, ALICE, BOB, options=("--check",))
    assert "changed=0" in third
    assert held(tmp_path, "alice")["id"] == alice["id"]
    assert operator_key.read_bytes() == key  # never replaced


def test_a_scope_change_a_rotation_and_a_removal_revoke_the_old_credential(
    tmp_path: Path,
) -> None:
    clients(tmp_path, ALICE, BOB)
    alice, bob = held(tmp_path, "alice"), held(tmp_path, "bob")

    widened = clients(tmp_path, {**ALICE, "services": ["web", "ssh"]}, BOB)
    assert "revoked alice: its services are web (declared: web, ssh)" in widened
    alice_2 = held(tmp_path, "alice")
    assert alice_2["services"] == ["web", "ssh"]
    assert revoked(tmp_path) == [alice["id"]]

    rotated = clients(
        tmp_path,
        {**ALICE, "services": ["web", "ssh"]},
        BOB,
        options=(
            "-e",
            "client_credentials_rotate=bob",
        ),
    )
    assert "revoked bob: rotated" in rotated
    bob_2 = held(tmp_path, "bob")
    assert bob_2["id"] != bob["id"]

    removed = clients(tmp_path, {**ALICE, "services": ["web", "ssh"]})
    assert "revoked bob: no longer declared" in removed
    assert revoked(tmp_path) == [alice["id"], bob["id"], bob_2["id"]]
    retired = sorted(path.name for path in (tmp_path / "credentials/clients/revoked").iterdir())
    assert retired == sorted(
        [f"alice.{alice['id']}.json", f"bob.{bob['id']}.json", f"bob.{bob_2['id']}.json"]
    )
    assert not (tmp_path / "credentials/clients/bob.json").exists()
    assert "changed=0" in clients(tmp_path, {**ALICE, "services": ["web", "ssh"]})


def test_a_credential_issued_before_the_secret_was_known_gets_a_token(tmp_path: Path) -> None:
    clients(tmp_path, ALICE, with_secret=False)
    path = tmp_path / "credentials" / "clients" / "alice.json"
    first = load_credential(path).certificate.id
    assert load_credential(path).signaling_token == ""
    assert "changed=0" in clients(tmp_path, ALICE, with_secret=False)

    renewed = clients(tmp_path, ALICE)
    assert "revoked alice: it has no signaling token" in renewed
    assert held(tmp_path, "alice")["id"] != first  # held() checks the token
    assert revoked(tmp_path) == [first]


def test_bad_client_lists_are_one_sentence(tmp_path: Path) -> None:
    for declared, options, message in (
        ((ALICE, ALICE), (), "client_credentials_clients declares alice more than once"),
        ((ALICE,), ("-e", "client_credentials_rotate=carol"), "names carol, which"),
        (({"name": "alice", "services": ["web"]},), (), "missing required arguments: homelabs"),
    ):
        result = run(tmp_path, CLIENTS_PLAY, *options, client_credentials_clients=list(declared))
        assert result.returncode != 0
        assert message in result.stdout
        assert "changed=0" in result.stdout


def homelab_identity(tmp_path: Path, **variables: Any) -> subprocess.CompletedProcess[str]:
    operator_key = tmp_path / "credentials" / "operator.key"
    if not operator_key.exists():
        operator_key.parent.mkdir(exist_ok=True)
        cli = Path(sys.executable).with_name("homelab-p2p")
        subprocess.run(
            [cli, "credential", "new-operator", "--out", operator_key],
            check=True,
            capture_output=True,
        )
    settings: dict[str, Any] = {
        "homelab_server_operator_key": str(operator_key),
        "homelab_server_credentials_dir": str(tmp_path / "credentials" / "laptop"),
        "homelab_server_config_dir": str(tmp_path / "etc"),
        "homelab_server_user": os.environ.get("USER") or "root",
        "homelab_server_service_state": "stopped",  # no daemon to restart here
        "bridge_package_controller_python": sys.executable,
        **variables,
    }
    (tmp_path / "etc").mkdir(exist_ok=True)
    result = run(tmp_path, IDENTITY_PLAY, **settings)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_homelab_gets_its_credential_and_the_revocation_list(tmp_path: Path) -> None:
    homelab_identity(tmp_path)
    installed = tmp_path / "etc" / "identity.json"
    assert oct(installed.stat().st_mode & 0o777) == "0o600"
    first = load_credential(installed).certificate
    assert (first.kind, first.name) == ("homelab", "laptop")
    assert installed.read_text() == (tmp_path / "credentials/laptop/identity.json").read_text()
    listed = tmp_path / "etc" / "revoked.json"
    assert json.loads(listed.read_text()) == {"revoked": []}
    assert oct(listed.stat().st_mode & 0o777) == "0o644"

    assert "changed=0" in homelab_identity(tmp_path).stdout

    revocations = tmp_path / "credentials" / "revoked.json"
    revocations.write_text('{"revoked": [{"id": "0123456789abcdef"}]}\n')
    renamed = homelab_identity(
        tmp_path, homelab_server_name="nas", homelab_server_revocation_list=str(revocations)
    )
    assert "its name is laptop (declared: nas)" in renamed.stdout
    assert load_credential(installed).certificate.name == "nas"
    assert listed.read_text() == revocations.read_text()


def test_a_new_operator_key_issues_the_homelab_a_new_credential(tmp_path: Path) -> None:
    homelab_identity(tmp_path)
    before = load_credential(tmp_path / "etc" / "identity.json")
    (tmp_path / "credentials" / "operator.key").unlink()
    again = homelab_identity(tmp_path)
    assert "issued under another operator key" in again.stdout
    after = load_credential(tmp_path / "etc" / "identity.json")
    assert operator_public_text(after.operator) != operator_public_text(before.operator)
