"""A simulated internet with two home routers, in network namespaces (none attached to the host).

    homelab 192.168.1.10 -- [nat1 192.168.1.1 | 203.0.113.11] --+
                                                                 br0 in "inet" 203.0.113.1
    client  192.168.2.10 -- [nat2 192.168.2.1 | 203.0.113.12] --+  (signaling gateway, coturn)

Each router masquerades its LAN: "cone" is Linux's default (endpoint-independent mapping,
port-restricted filtering), "symmetric" adds ``--random-fully`` (a new port for every
destination). Two pitfalls, from notes/webrtc-netns-nat-turn.md: a router must drop
unsolicited traffic to itself (otherwise an early inbound ICE check leaves a confirmed
conntrack entry that breaks hole punching), and "inet" needs a default route to nowhere
(otherwise coturn, relaying towards a private address, gets "Network is unreachable" and
closes the allocation).
"""

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.netns import Lab, Namespace, ip

INTERNET = "203.0.113.0/24"
INET_IP = "203.0.113.1"
TURN_USER, TURN_PASSWORD = "homelab", "turn-secret"


@dataclass
class NatLab:
    inet: Namespace
    homelab: Namespace
    client: Namespace
    routers: dict[str, Namespace]

    def mode(self, router: str, kind: str) -> None:
        """Make ``router`` ("nat1" homelab side, "nat2" client side) a cone or symmetric NAT."""
        namespace = self.routers[router]
        namespace.run("iptables", "-t", "nat", "-F", "POSTROUTING")
        namespace.run("conntrack", "-F", check=False)
        rule = [
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            f"{router}w",
            "-j",
            "MASQUERADE",
        ]
        namespace.run(*rule, *(["--random-fully"] if kind == "symmetric" else []))


def build_nat_lab(lab: Lab) -> NatLab:
    inet = lab.host("inet")
    ip("-n", inet.name, "link", "add", "br0", "type", "bridge")
    ip("-n", inet.name, "addr", "add", f"{INET_IP}/24", "dev", "br0")
    ip("-n", inet.name, "link", "set", "br0", "up")
    ip("-n", inet.name, "route", "add", "default", "via", "203.0.113.254", "dev", "br0")
    lab.allow(INTERNET)
    routers: dict[str, Namespace] = {}
    hosts: list[Namespace] = []
    for index, (router_name, host_name, subnet) in enumerate(
        (("nat1", "home", "192.168.1"), ("nat2", "cli", "192.168.2")), start=1
    ):
        router, host = lab.host(router_name), lab.host(host_name)
        lab.wire(
            router,
            f"203.0.113.1{index}/24",
            inet,
            f"{router_name}p",
            bridge="br0",
            member_end=f"{router_name}w",
        )
        lab.wire(host, f"{subnet}.10/24", router, f"{router_name}l", member_end="eth0")
        ip("-n", router.name, "addr", "add", f"{subnet}.1/24", "dev", f"{router_name}l")
        ip("-n", host.name, "route", "add", "default", "via", f"{subnet}.1")
        lab.allow(f"{subnet}.0/24")
        router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        wan, lan = f"{router_name}w", f"{router_name}l"
        for rule in (
            "-P FORWARD DROP",
            f"-A FORWARD -i {lan} -o {wan} -j ACCEPT",
            f"-A FORWARD -i {wan} -o {lan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"-A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"-A INPUT -i {wan} -j DROP",
        ):
            router.run("iptables", *rule.split())
        routers[router_name] = router
        hosts.append(host)
    nat = NatLab(inet, hosts[0], hosts[1], routers)
    nat.mode("nat1", "cone")
    nat.mode("nat2", "cone")
    return nat


def start_turn(inet: Namespace, workdir: Path, port: int = 3478) -> subprocess.Popen[bytes]:
    """coturn on 203.0.113.1:PORT (STUN and TURN), long-term credentials TURN_USER/TURN_PASSWORD.

    Its log is turnserver.log for the default port, turnserver-PORT.log for another.
    """
    name = "turnserver" if port == 3478 else f"turnserver-{port}"
    log = workdir / f"{name}.log"
    process = inet.popen(
        [
            "turnserver",
            "-n",
            f"--listening-ip={INET_IP}",
            f"--relay-ip={INET_IP}",
            f"--listening-port={port}",
            # Relay ports of their own, so two servers in the lab never compete for one.
            f"--min-port={49160 + (port - 3478) * 300}",
            f"--max-port={49400 + (port - 3478) * 300}",
            "--lt-cred-mech",
            f"--user={TURN_USER}:{TURN_PASSWORD}",
            "--realm=homelab-p2p.test",
            "--fingerprint",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-multicast-peers",
            f"--userdb={workdir / (name + '.db')}",
            f"--pidfile={workdir / (name + '.pid')}",
            f"--log-file={log}",
            "--simple-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process


def wait_turn_ready(workdir: Path, port: int = 3478, timeout: float = 20) -> None:
    """Until coturn on PORT logs that its servers run (it answers from then on)."""
    log = workdir / ("turnserver.log" if port == 3478 else f"turnserver-{port}.log")
    deadline = time.monotonic() + timeout
    while "Total General servers" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"coturn on port {port} did not start"
        time.sleep(0.05)
