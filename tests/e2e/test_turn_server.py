"""The turn_server role's coturn relays what no direct path can carry.

The role renders its configuration (tasks_from=config, then publish for the client's ICE
entries) into the test's directory; coturn runs with that file in the lab's "internet", and
a homelab and a client behind symmetric NATs connect through it, and only through it.
"""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.bridge import EchoService, client_args, echo_round_trip
from lab.netns import venv_bin
from tests.e2e.conftest import NatSetup
from tests.support.ansible import extra_vars, run_local_play
from tests.support.natlab import INET_IP

pytestmark = pytest.mark.slow

PORT = 3490  # the lab's own coturn has 3478; this one is the role's alone
PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: turn_server, tasks_from: config.yml}
    - ansible.builtin.include_role: {name: turn_server, tasks_from: publish.yml}
"""


def render_with_the_role(workdir: Path, auth: str) -> tuple[Path, list[dict[str, str]]]:
    variables = {
        "turn_server_config_file": workdir / "turnserver.conf",
        "turn_server_config_group": "root",
        "turn_server_credentials_dir": workdir / "turn-credentials",
        "turn_server_public_address": INET_IP,
        "turn_server_listening_port": PORT,
        "turn_server_realm": "homelab-p2p.test",
        "turn_server_service_state": "stopped",  # no coturn.service to restart here
        "turn_server_auth": auth,
        "ansible_python_interpreter": sys.executable,
    }
    relay_ports = '{"turn_server_relay_ports": [49700, 49800]}'
    result = run_local_play(workdir, PLAY, *extra_vars(variables), relay_ports)
    assert result.returncode == 0, result.stdout
    client_ice = yaml.safe_load((workdir / "turn-credentials" / "client-ice.yml").read_text())
    return workdir / "turnserver.conf", client_ice["ice_servers"]


@pytest.mark.parametrize("auth", ["long-term", "shared-secret"])
async def test_behind_two_symmetric_nats_only_the_roles_turn_server_connects(
    nat_lab: NatSetup, auth: str
) -> None:
    config, ice_servers = render_with_the_role(nat_lab.workdir, auth)
    udp = next(s for s in ice_servers if s["urls"].endswith("?transport=udp"))
    assert udp["urls"] == f"turn:{INET_IP}:{PORT}?transport=udp"
    nat_lab.nat.inet.popen(
        ["turnserver", "-c", str(config), f"--listening-ip={INET_IP}", f"--relay-ip={INET_IP}",
         f"--pidfile={nat_lab.workdir / 'role-turnserver.pid'}",
         f"--userdb={nat_lab.workdir / 'role-turnserver.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    nat_lab.nat.mode("nat1", "symmetric")
    nat_lab.nat.mode("nat2", "symmetric")
    async with EchoService(nat_lab.nat.homelab, 7007):
        daemon = await nat_lab.start_daemon({"echo7": "tcp://127.0.0.1:7007"}, ice_servers=[udp])

        # Without a TURN server the client finds no path...
        argv = [venv_bin("homelab-p2p"), "pipe", "echo7", *client_args(nat_lab.signaling_url)]
        argv[argv.index("--timeout") + 1] = "6"
        direct = await asyncio.to_thread(nat_lab.nat.client.run, *argv, check=False)
        assert "WebRTC connection timeout: no network path" in direct.stderr

        # ...and with the role's, it connects relayed.
        flags = ["--ice-server", udp["urls"], "--ice-username", udp["username"],
                 "--ice-credential", udp["credential"]]  # fmt: skip
        _, port = await nat_lab.start_forward("echo7", *flags, name="relayed")
        assert await echo_round_trip(nat_lab.nat.client, port, 256 * 1024)
        match = await daemon.logged(r"connected over (\w+) \(local (\w+), remote (\w+)\)")
        # The role's coturn is the only TURN server either side knows: the relay is its.
        assert match.group(1) == "relay", daemon.log()
