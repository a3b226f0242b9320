"""Debian's sshd in a lab namespace, with keys of its own: the SSH server of a homelab."""

import subprocess
from pathlib import Path


def sshd_config(keys: Path) -> Path:
    """Keys and a config for Debian's sshd on 127.0.0.1:2200, accepting the client key."""
    keys.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True
        )
    (keys / "authorized_keys").write_text((keys / "client_key.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    config = keys / "sshd_config"
    config.write_text(
        "ListenAddress 127.0.0.1:2200\n"
        f"HostKey {keys / 'host_key'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\n"
        f"PidFile {keys / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    return config
