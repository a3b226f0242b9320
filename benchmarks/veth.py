"""The lab of the bridge benchmarks: namespaces "home" and "client" joined by one veth pair.

"home" (10.99.0.1) runs the signaling gateway, the daemon and the services, "client"
(10.99.0.2) the clients; nothing leaves the lab.
"""

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import SECRET
from lab.bridge import write_daemon_config
from lab.gateway import GatewayProcess
from lab.netns import Lab, Namespace, lab

HOME_IP, CLIENT_IP = "10.99.0.1", "10.99.0.2"
SIGNALING = f"ws://{HOME_IP}:8765/prod"


def veth_pair(built: Lab) -> tuple[Namespace, Namespace]:
    home, client = built.host("home"), built.host("client")
    built.wire(home, f"{HOME_IP}/24", client, "veth1", member_end="veth0")
    built.namespaces["client"].run("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "veth1")
    built.allow("10.99.0.0/24")
    return home, client


def log_directory(prefix: str) -> Path:
    """Where a run's logs go (they stay, for reading afterwards), with the gateway's secret."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / "secret").write_bytes(SECRET)
    print(f"logs in {workdir}", flush=True)
    return workdir


def start_gateway(home: Namespace, workdir: Path) -> GatewayProcess:
    """The signaling gateway in "home" at SIGNALING, started as users start it."""
    return GatewayProcess(
        ["--host", HOME_IP, "--port", "8765", "--secret-file", str(workdir / "secret"),
         "--log-level", "INFO"],
        workdir / "gateway.log",
        prefix=home.command([])[:4],
    ).start()  # fmt: skip


@dataclass(frozen=True)
class VethLab:
    home: Namespace
    client: Namespace
    workdir: Path
    services: dict[str, str]
    """The daemon's services: ``echo7`` and ``sink``, TCP services in "home"."""
    daemon_config: Path
    """The daemon's configuration with these services, on the default data path."""


@contextlib.contextmanager
def veth_lab(name: str, log_prefix: str, echo_port: int, sink_port: int) -> Iterator[VethLab]:
    """The lab with the gateway running in "home"; the caller starts the services and daemon."""
    workdir = log_directory(log_prefix)
    with lab(name) as built:
        home, client = veth_pair(built)
        gateway = start_gateway(home, workdir)
        services = {"echo7": f"tcp://127.0.0.1:{echo_port}", "sink": f"tcp://127.0.0.1:{sink_port}"}
        config = write_daemon_config(workdir / "daemon.yml", SIGNALING, services, log_level="INFO")
        yield VethLab(home, client, workdir, services, config)
        gateway.stop()
