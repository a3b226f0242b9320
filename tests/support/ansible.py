"""Running a small play on this machine with the repository's Ansible configuration."""

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def extra_vars(variables: dict[str, Any]) -> list[str]:
    """``key=value`` for each variable (Ansible reads them as strings, or JSON for ``{...}``)."""
    return [f"{key}={value}" for key, value in variables.items()]


def run_local_play(
    workdir: Path,
    play: str,
    *variables: str,
    environment: dict[str, str] | None = None,
    options: Sequence[str] = (),
    inventory: str = "localhost,",
) -> subprocess.CompletedProcess[str]:
    """``play`` (YAML) against localhost over the local connection, ``-e`` for each variable.

    ``inventory`` is ansible-playbook's ``-i``: the bare host by default, or a file that puts
    localhost in the site's groups.

    The repository's ansible.cfg applies (roles, filter plugins) whatever the current
    directory; ``environment`` replaces the default one (that config and the venv on PATH);
    ``options`` go to ansible-playbook as they are (``--check``, ``-vvv``).
    """
    playbook = workdir / "play.yml"
    playbook.write_text(play)
    argv = [str(ANSIBLE_PLAYBOOK), "-i", inventory, "-c", "local", *options, str(playbook)]
    for variable in variables:
        argv += ["-e", variable]
    default = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{ANSIBLE_PLAYBOOK.parent}:/usr/bin:/bin",
    }
    return subprocess.run(
        argv,
        cwd=ROOT,
        env=environment or default,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
