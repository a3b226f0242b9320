"""End-to-end fixtures: hosts in network namespaces, the gateway, the daemon, the client."""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.bridge import BridgeHosts
from lab.gateway import GatewayProcess
from lab.netns import Lab, Namespace, lab
from tests.support.natlab import INET_IP, NatLab, build_nat_lab, start_turn, wait_turn_ready

LAN = "10.77.0.0/24"
GATEWAY_IP = "10.77.0.1"


def _require_lab() -> None:
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests build network namespaces: run them as root")
    for tool in ("ip", "iptables", "conntrack", "turnserver", "sshd"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed (make system-deps installs it)")


@dataclass
class LanLab(BridgeHosts):
    lab: Lab
    gateway_host: Namespace
    homelab: Namespace
    client: Namespace
    gateway: GatewayProcess
    workdir: Path
    signaling_url: str = f"ws://{GATEWAY_IP}:8765/prod"


def lan_gateway(lab_host: Namespace, secret_file: Path, log: Path, *extra: str) -> GatewayProcess:
    args = ["--host", GATEWAY_IP, "--port", "8765", "--secret-file", str(secret_file), *extra]
    return GatewayProcess(args, log, prefix=lab_host.command([])[:4]).start()


@pytest.fixture
def lan(request: pytest.FixtureRequest, tmp_path: Path, secret_file: Path) -> Iterator[LanLab]:
    """Gateway, homelab and client, each a host of its own on one switch (10.77.0.0/24).

    ``@pytest.mark.gateway_args(...)`` adds options to the gateway's command line.
    """
    _require_lab()
    marker = request.node.get_closest_marker("gateway_args")
    extra = marker.args if marker else ()
    with lab() as built:
        gateway_host, homelab, client = built.host("gw"), built.host("home"), built.host("cli")
        built.switch(
            "sw",
            LAN,
            {gateway_host: f"{GATEWAY_IP}/24", homelab: "10.77.0.2/24", client: "10.77.0.3/24"},
        )
        gateway = lan_gateway(gateway_host, secret_file, tmp_path / "gateway.log", *extra)
        yield LanLab(built, gateway_host, homelab, client, gateway, tmp_path)
        gateway.stop()


@dataclass
class NatSetup(BridgeHosts):
    nat: NatLab
    gateway: GatewayProcess
    workdir: Path
    signaling_url: str = f"ws://{INET_IP}:8765/prod"

    def __post_init__(self) -> None:
        self.homelab, self.client = self.nat.homelab, self.nat.client


@pytest.fixture
def nat_lab(tmp_path: Path, secret_file: Path) -> Iterator[NatSetup]:
    """Homelab and client behind NAT routers; signaling and coturn on the "internet"."""
    _require_lab()
    with lab() as built:
        nat = build_nat_lab(built)
        start_turn(nat.inet, tmp_path)
        gateway = GatewayProcess(
            ["--host", INET_IP, "--port", "8765", "--secret-file", str(secret_file)],
            tmp_path / "gateway.log",
            prefix=nat.inet.command([])[:4],
        ).start()
        wait_turn_ready(tmp_path)
        yield NatSetup(nat, gateway, tmp_path)
        gateway.stop()
