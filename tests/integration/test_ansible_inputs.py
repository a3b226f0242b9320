"""Bad input to the Ansible roles: one sentence saying what to fix, before anything changes.

Each case runs the real role against this machine and must stop at its checks, so the
machine is never touched.
"""

import subprocess
from pathlib import Path

import pytest

from tests.support.ansible import ROOT, run_local_play


def run_role(tmp_path: Path, role: str, *variables: str) -> subprocess.CompletedProcess[str]:
    play = f"- hosts: localhost\n  gather_facts: true\n  roles:\n    - role: {role}\n"
    return run_local_play(tmp_path, play, *variables)


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "homelab_server_max_peers=many",
            "argument 'homelab_server_max_peers' is of type str and we were unable to convert",
        ),
        (
            '{"homelab_server_services": ["ssh"]}',
            "argument 'homelab_server_services' is of type list",
        ),
        (
            "homelab_server_log_level=LOUD",
            "value of homelab_server_log_level must be one of: DEBUG, INFO, WARNING, ERROR",
        ),
    ],
)
def test_a_wrong_value_fails_at_role_entry_with_the_argument_spec(
    tmp_path: Path, variable: str, message: str
) -> None:
    result = run_role(tmp_path, "homelab_server", variable)
    assert result.returncode != 0
    assert "Validating arguments against arg spec 'main'" in result.stdout
    assert message in result.stdout
    assert "changed=0" in result.stdout


def test_a_misspelled_variable_is_named_with_the_nearest_known_one(tmp_path: Path) -> None:
    result = run_role(
        tmp_path, "homelab_server", "homelab_server_servces=x", "ansible_service_mgr=systemd"
    )
    assert result.returncode != 0
    assert (
        "homelab_server_servces is not a variable of the homelab_server role; "
        "did you mean homelab_server_services?"
    ) in result.stdout
    assert "changed=0" in result.stdout


@pytest.mark.parametrize("role", ["homelab_server", "signaling_local"])
def test_a_host_without_systemd_is_refused_and_pointed_at_make_demo(
    tmp_path: Path, role: str
) -> None:
    venv = Path("/opt/homelab-p2p-bridge/venv")
    installed_before = venv.exists()
    result = run_role(tmp_path, role, "ansible_service_mgr=openrc")
    assert result.returncode != 0
    assert "does not run systemd as PID 1 (it runs openrc)" in result.stdout
    assert "`make demo`" in result.stdout
    assert "changed=0" in result.stdout
    assert venv.exists() == installed_before  # refused before the package is installed


def test_an_untested_distribution_stops_the_site_before_any_play_changes_anything(
    tmp_path: Path,
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[homelab]\nlocalhost\n[signaling]\nlocalhost\n")
    result = run_local_play(
        tmp_path,
        f"- name: The site\n  ansible.builtin.import_playbook: {ROOT / 'site.yml'}\n",
        # Facts say Debian 12 here; extra variables outrank them, as another host's facts would.
        "ansible_distribution=Ubuntu",
        "ansible_distribution_version=24.04",
        "ansible_distribution_major_version=24",
        inventory=str(inventory),
    )
    assert result.returncode != 0
    assert (
        "localhost runs Ubuntu 24.04, which homelab-p2p-bridge is not tested on "
        "(tested: Debian 12, 13), so nothing was changed. Use a tested release, or set "
        "preflight_allow_untested_platform: true to try it anyway "
        '(docs/ansible.md, "Tested platforms").'
    ) in result.stdout
    assert "PLAY [Deploy the signaling service]" not in result.stdout
    assert "changed=0" in result.stdout


def test_an_untested_distribution_may_be_tried_with_a_warning(tmp_path: Path) -> None:
    play = (
        "- hosts: localhost\n  gather_facts: true\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: preflight\n"
        "        tasks_from: platform.yml\n"
    )
    result = run_local_play(
        tmp_path,
        play,
        "ansible_distribution=Ubuntu",
        "ansible_distribution_version=24.04",
        "ansible_distribution_major_version=24",
        "preflight_allow_untested_platform=true",
    )
    assert result.returncode == 0, result.stdout
    untested = "localhost runs Ubuntu 24.04, which is not tested (tested: Debian 12, 13)"
    assert untested in result.stdout
