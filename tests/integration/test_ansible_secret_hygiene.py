"""A signing secret held in ansible-vault stays secret while the plays use it.

The plays that touch signaling's signing secret run here at -vvv with the secret as a vault
variable: the clients' credentials (client_credentials), the homelab's token and credential
(homelab_server), and the AWS back end's client token and smoke test (signaling_aws, against
a local gateway); then diagnose's doctor with a TURN credential from the vault. Neither secret
may appear in their output, in any process's command line or environment sampled every few
milliseconds while they run (where Ansible puts a task's `environment:`), or in a file
afterwards outside the credentials directory.
"""

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.gateway import GatewayProcess
from p2p_protocol.tokens import verify_token
from p2p_runtime.identity import load_credential
from tests.support.ansible import ANSIBLE_PLAYBOOK, run_local_play

PLAYS = """
- hosts: localhost
  gather_facts: false
  roles:
    - client_credentials

- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: homelab_server
        tasks_from: "{{ item }}"
      loop: [token.yml, identity.yml]

- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: signaling_aws
        tasks_from: "{{ item }}"
      loop: [publish.yml, smoke_test.yml]

# diagnose's doctor from the controller, with a homelab whose ICE servers hold a TURN credential.
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.add_host:
        name: homelab-under-test
        groups: [homelab]
        ansible_connection: local
        diagnose__daemon_config:
          name: laptop
          signaling_url: "{{ signaling_aws_smoke_url }}"
          ice_servers:
            - urls: turn:127.0.0.1:9?transport=udp
              username: homelab
              credential: "{{ vault_turn_credential }}"
        client_credentials_clients: "{{ client_credentials_clients }}"
        client_credentials_dir: "{{ client_credentials_dir }}"
      no_log: true
    - ansible.builtin.include_role:
        name: diagnose
        tasks_from: doctor.yml
      vars:
        diagnose_client_token_file: "{{ signaling_aws_credentials_dir }}/client.token"
    - ansible.builtin.assert:
        that: (diagnose__doctor.stdout | from_json).checks | length > 0
        quiet: true
"""


class Sampler:
    """Reads every process's command line and environment until stopped, looking for needles."""

    def __init__(self, *needles: bytes) -> None:
        self.needles = needles
        self.found: dict[bytes, set[str]] = {needle: set() for needle in needles}
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit() or entry.name == str(os.getpid()):
                    continue
                for part in ("cmdline", "environ"):
                    try:
                        data = Path(entry.path, part).read_bytes()
                    except OSError:  # gone, or not ours to read
                        continue
                    for needle in self.needles:
                        if needle in data:
                            words = data.replace(b"\0", b" ")[:200].decode(errors="replace")
                            self.found[needle].add(f"{part} of {entry.name}: {words}")
            self.rounds += 1
            time.sleep(0.002)

    @contextmanager
    def running(self) -> Iterator["Sampler"]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def files_holding(needle: bytes, roots: list[Path], allowed: list[Path], since: float) -> list[str]:
    """Files under ``roots`` changed since ``since`` that hold ``needle``, outside ``allowed``."""
    holding = []
    for root in roots:
        for directory, _, names in os.walk(root):
            if any(Path(directory).is_relative_to(place) for place in allowed):
                continue
            for name in names:
                path = Path(directory, name)
                try:
                    stat = path.lstat()
                    if not path.is_file() or stat.st_mtime < since or stat.st_size > 5_000_000:
                        continue
                    if needle in path.read_bytes():
                        holding.append(str(path))
                except OSError:
                    continue
    return holding


def vault_variable(name: str, value: str, password_file: Path) -> str:
    """``name: !vault |...`` from ansible-vault, the value given on stdin (not argv)."""
    vault = ANSIBLE_PLAYBOOK.with_name("ansible-vault")
    encrypted = subprocess.run(
        [vault, "encrypt_string", "--vault-password-file", password_file, "--stdin-name", name],
        input=value,
        capture_output=True,
        text=True,
        check=True,
    )
    return encrypted.stdout


def test_a_vault_secret_reaches_no_output_command_line_environment_or_stray_file(
    tmp_path: Path,
) -> None:
    started = time.time()
    secret = secrets.token_urlsafe(36)
    turn_credential = secrets.token_urlsafe(24)
    canary = secrets.token_urlsafe(24)  # proves the sampler sees command lines at all
    credentials, config_dir = tmp_path / "credentials", tmp_path / "etc"
    credentials.mkdir(mode=0o700)
    config_dir.mkdir()
    password_file = tmp_path / "vault-password"
    password_file.write_text(secrets.token_urlsafe(16) + "\n")
    # The gateway the smoke test talks to reads the same secret from its own file.
    gateway_secret = credentials / "gateway-secret"
    gateway_secret.write_text(secret + "\n")
    gateway = GatewayProcess(
        ["--port", "0", "--secret-file", str(gateway_secret)], tmp_path / "gateway.log"
    ).start()
    settings = f"""
ansible_python_interpreter: {sys.executable}
bridge_package_controller_python: {sys.executable}
{vault_variable("vault_signing_secret", secret, password_file)}
{vault_variable("vault_turn_credential", turn_credential, password_file)}
client_credentials_clients:
  - {{name: alice, homelabs: [laptop], services: [web]}}
client_credentials_operator_key: {credentials}/operator.key
client_credentials_dir: {credentials}/clients
client_credentials_revocation_list: {credentials}/revoked.json
client_credentials_signing_secret: "{{{{ vault_signing_secret }}}}"
homelab_server_signing_secret: "{{{{ vault_signing_secret }}}}"
homelab_server_operator_key: {credentials}/operator.key
homelab_server_credentials_dir: {credentials}/laptop
homelab_server_config_dir: {config_dir}
homelab_server_user: {os.environ.get("USER") or "root"}
homelab_server_service_state: stopped
signaling_aws__api: {{url: "{gateway.url}"}}
signaling_aws__secret: "{{{{ vault_signing_secret }}}}"
signaling_aws_secret: "{{{{ vault_signing_secret }}}}"
signaling_aws_credentials_dir: {credentials}/aws
signaling_aws_smoke_url: {gateway.url}
signaling_aws_endpoint_url: http://127.0.0.1:9
"""
    (tmp_path / "settings.yml").write_text(settings)
    sampler = Sampler(secret.encode(), turn_credential.encode(), canary.encode())
    try:
        with sampler.running():
            subprocess.run(
                [sys.executable, "-c", "import time; time.sleep(0.3)", canary], check=True
            )
            result = run_local_play(
                tmp_path,
                PLAYS,
                f"@{tmp_path / 'settings.yml'}",
                options=("-vvv", "--vault-password-file", str(password_file)),
            )
    finally:
        gateway.stop()
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-6000:]

    # The plays used the secret: what they issued carries tokens it signed.
    alice = load_credential(credentials / "clients" / "alice.json")
    assert verify_token(secret.encode(), alice.signaling_token).name == "alice"
    homelab_token = (config_dir / "token").read_text().strip()
    assert verify_token(secret.encode(), homelab_token).role == "homelab"
    client_token = (credentials / "aws" / "client.token").read_text().strip()
    assert verify_token(secret.encode(), client_token).role == "client"
    assert "Echo from " + gateway.url in said  # the smoke test's echo came back

    assert "TASK [diagnose : Run homelab-p2p doctor]" in said  # doctor ran

    assert secret not in said
    assert turn_credential not in said
    assert sampler.found[canary.encode()], "the sampler saw no command line"
    assert sampler.rounds > 100
    assert not sampler.found[secret.encode()]
    assert not sampler.found[turn_credential.encode()]
    for needle in (secret, turn_credential):
        stray = files_holding(
            needle.encode(),
            [tmp_path, Path.home() / ".ansible", Path("/tmp"), Path("/var/tmp")],
            allowed=[credentials, config_dir],
            since=started,
        )
        assert stray == [], needle
    # The scan does find the secret where it is allowed to be.
    assert files_holding(secret.encode(), [credentials], [], started) == [str(gateway_secret)]
