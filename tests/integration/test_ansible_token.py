"""homelab_server issues the homelab's token from a secret given as a value (a vault
variable, or what signaling_aws publishes): on the command's standard input only
(test_ansible_secret_hygiene.py proves it reaches no command line, environment or file)."""

import os
import subprocess
import sys
from pathlib import Path

from lab import SECRET
from p2p_protocol.tokens import verify_token
from tests.support.ansible import extra_vars, run_local_play

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: homelab_server
        tasks_from: token.yml
"""


def run_token_tasks(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    variables = {
        "homelab_p2p_signaling_secret": SECRET.decode(),
        "homelab_server_config_dir": str(tmp_path),
        "homelab_server_user": os.environ.get("USER") or "root",
        "homelab_server_service_state": "stopped",  # no daemon to restart here
        "bridge_package_controller_python": sys.executable,
        "ansible_python_interpreter": sys.executable,
    }
    return run_local_play(tmp_path, PLAY, *extra_vars(variables))


def test_a_published_secret_value_issues_the_token_and_a_rerun_keeps_it(tmp_path: Path) -> None:
    first = run_token_tasks(tmp_path)
    assert first.returncode == 0, first.stdout
    assert SECRET.decode() not in first.stdout
    token = (tmp_path / "token").read_text().strip()
    claims = verify_token(SECRET, token)
    assert (claims.role, claims.name) == ("homelab", "laptop")
    assert oct((tmp_path / "token").stat().st_mode & 0o777) == "0o600"

    second = run_token_tasks(tmp_path)
    assert second.returncode == 0, second.stdout
    assert "changed=0" in second.stdout
    assert (tmp_path / "token").read_text().strip() == token
