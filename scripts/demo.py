"""`make demo` / `make demo-clean`: the whole system on this machine, in a systemd container.

    python scripts/demo.py up     build the image if needed, start the homelab-demo container,
                                  provision it with `ansible-playbook -i inventory/demo site.yml`,
                                  and prove a round trip through WebRTC to services inside it
    python scripts/demo.py down   remove the container, the image and the demo's files

The container plays the homelab and runs the local signaling gateway; this machine plays the
laptop. A second `up` reuses the running container and says so when nothing changed.
Everything it keeps on this machine is under .demo/ and credentials/homelab-demo/, except
what `down` lists as kept (and why).
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".demo"
# Everything the demo's play keeps on the controller (inventory/demo puts the operator's key,
# the clients and the revocation list here too), so that demo-clean removes it all.
CREDENTIALS = ROOT / "credentials" / "homelab-demo"
CLIENT = CREDENTIALS / "clients" / "demo.json"
# The container's SSH host key, written anew at each `up` (a new container has a new key).
KNOWN_HOSTS = STATE / "known_hosts"
# The demo's own client agent (docs/client.md), so that `down` leaves none behind.
AGENT_SOCKET = STATE / "agent" / "agent.sock"
# The homelab's own web service (scripts/demo-web/), installed into the container.
WEB_SOURCE = ROOT / "scripts" / "demo-web"
WEB_ROOT = "/srv/homelab-demo-web"
WEB_UNIT = "homelab-demo-web.service"
# scripts/podman-env.sh writes podman's settings for this machine here, outside the checkout.
PODMAN_CONFIG = Path(tempfile.gettempdir()) / "homelab-p2p-podman"
BIN = Path(sys.executable).parent
CONTAINER = "homelab-demo"
IMAGE = "localhost/homelab-p2p-systemd:bookworm"
# The gateway's WebSocket port (the console) and its app origin, published on this machine's
# loopback: browsers give service workers and WebCrypto to localhost, not to the container's
# address over plain http.
PUBLISHED_PORTS = (8765, 8767)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """podman with this machine's settings (scripts/podman-env.sh: runc, ulimits)."""
    command = '. scripts/podman-env.sh && exec podman "$@"'
    return subprocess.run(
        ["bash", "-c", command, "podman", *args],
        cwd=ROOT,
        check=check,
        capture_output=True,
        text=True,
    )


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def start_container() -> tuple[str, bool]:
    """The container, running and booted: its address on podman's network, and whether it
    was running already."""
    inspect = podman("inspect", "--format", "{{.State.Status}}", CONTAINER, check=False)
    state = inspect.stdout.strip()
    if state and not publishes_the_console():
        step(f"recreating container {CONTAINER}: it predates the ports the browser proxy needs")
        podman("rm", "--force", CONTAINER)
        state = ""
    was_running = state == "running"
    if was_running:
        step(f"container {CONTAINER} is running")
    elif state:
        step(f"starting container {CONTAINER}")
        podman("start", CONTAINER)
    else:
        step(f"starting container {CONTAINER} (Debian 12, systemd as PID 1)")
        podman(
            "run", "--detach", "--name", CONTAINER, "--hostname", CONTAINER,
            "--cap-add", "NET_ADMIN,SYS_ADMIN", "--systemd=always",
            *(f"--publish=127.0.0.1:{port}:{port}" for port in PUBLISHED_PORTS), IMAGE,
        )  # fmt: skip
    for _ in range(60):
        booted = podman("exec", CONTAINER, "systemctl", "is-system-running", check=False)
        if booted.stdout.strip() in ("running", "degraded"):
            break
        time.sleep(0.5)
    address = podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", CONTAINER)
    return address.stdout.strip(), was_running


def install_web_service() -> bool:
    """The homelab's own web pages and their unit, in the container: True if they changed."""
    files = sorted(WEB_SOURCE.glob("*"))
    wanted = {f"{WEB_ROOT}/{f.name}": f for f in files if f.suffix != ".service"}
    wanted[f"/etc/systemd/system/{WEB_UNIT}"] = WEB_SOURCE / WEB_UNIT
    listing = podman("exec", CONTAINER, "sha256sum", *wanted, check=False).stdout
    have = {}  # path -> digest; sha256sum prints "DIGEST  PATH" for each file it found
    for line in listing.splitlines():
        digest, path = line.split(maxsplit=1)
        have[path] = digest
    changed = False
    podman("exec", CONTAINER, "mkdir", "-p", WEB_ROOT)
    for target, source in wanted.items():
        if have.get(target) != hashlib.sha256(source.read_bytes()).hexdigest():
            podman("cp", str(source), f"{CONTAINER}:{target}")
            changed = True
    if changed:
        podman("exec", CONTAINER, "systemctl", "daemon-reload")
        podman("exec", CONTAINER, "systemctl", "restart", WEB_UNIT)
    active = podman("exec", CONTAINER, "systemctl", "is-active", WEB_UNIT, check=False)
    enabled = podman("exec", CONTAINER, "systemctl", "is-enabled", WEB_UNIT, check=False)
    if active.stdout.strip() != "active" or enabled.stdout.strip() != "enabled":
        podman("exec", CONTAINER, "systemctl", "enable", "--now", WEB_UNIT)
        changed = True
    return changed


def write_known_hosts() -> None:
    """.demo/known_hosts: the container's SSH host key, read from the container itself."""
    for _ in range(60):  # ssh.service makes its keys as it starts, at boot
        key = podman("exec", CONTAINER, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False)
        if key.returncode == 0:
            break
        time.sleep(0.5)
    else:
        sys.exit(f"demo: {CONTAINER} has no SSH host key: is ssh.service running in it?")
    kind, blob = key.stdout.split()[:2]
    STATE.mkdir(exist_ok=True)
    KNOWN_HOSTS.write_text(f"{CONTAINER} {kind} {blob}\n")


def publishes_the_console() -> bool:
    """Whether the container publishes the gateway's console and app ports on loopback."""
    ports = podman("port", CONTAINER, check=False).stdout
    return all(f"{port}/tcp -> 127.0.0.1:{port}" in ports for port in PUBLISHED_PORTS)


def provision() -> int:
    """Runs site.yml on the container: how many tasks changed something."""
    step("provisioning it: ansible-playbook -i inventory/demo site.yml")
    command = f". scripts/podman-env.sh && exec {BIN}/ansible-playbook -i inventory/demo site.yml"
    run = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": f"{BIN}:{SYSTEM_PATH}"},
        check=False,
    )
    recap = [line for line in run.stdout.splitlines() if line.startswith(CONTAINER + " ")]
    print("    " + (recap[-1] if recap else "(no recap)"), flush=True)
    if run.returncode != 0:
        sys.exit(f"demo: the playbook failed:\n{run.stdout[-6000:]}{run.stderr[-2000:]}")
    changed = re.search(r"changed=(\d+)", recap[-1] if recap else "")
    return int(changed.group(1)) if changed else -1


def client_flags(address: str) -> list[str]:
    """The demo client's options: its credential proves it to the homelab and holds its token."""
    url = f"ws://{address}:8765/prod"
    return ["--signaling-url", url, "--credential-file", str(CLIENT), "--ice-server", "none"]


def client_env() -> dict[str, str]:
    """The demo's commands use the demo's own client agent."""
    AGENT_SOCKET.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {**os.environ, "HOMELAB_P2P_AGENT_SOCKET": str(AGENT_SOCKET)}


def fetch_title(address: str) -> str:
    """``homelab-p2p fetch web /``: the title of the homelab's own page."""
    argv = [str(BIN / "homelab-p2p"), "fetch", "web", "/", "--fail", *client_flags(address)]
    fetched = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=client_env(), check=False
    )
    title = re.search(r"<title>(.*?)</title>", fetched.stdout)
    if fetched.returncode != 0 or title is None:
        sys.exit(f"demo: fetching the web service through WebRTC failed: {fetched.stderr}")
    return title.group(1)


def echo_round_trip(address: str, message: str) -> str:
    """``homelab-p2p pipe echo``: write a line, read it back, and only then close stdin.

    (A data channel cannot be half-closed: closing stdin first would close the channel
    before the answer came back.)
    """
    argv = [str(BIN / "homelab-p2p"), "pipe", "echo", *client_flags(address)]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=client_env()
    ) as pipe:
        assert pipe.stdin is not None
        assert pipe.stdout is not None
        pipe.stdin.write(message + "\n")
        pipe.stdin.flush()
        answer = pipe.stdout.readline()
        pipe.stdin.close()
        pipe.wait(timeout=60)
    return answer.rstrip("\n")


def demo_key() -> Path:
    """A key for `ssh root@homelab-demo`, authorized in the container."""
    STATE.mkdir(exist_ok=True)
    key = STATE / "id_ed25519"
    if not key.exists():
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "demo", "-f", str(key)]
        subprocess.run(keygen, check=True)
    public = (STATE / "id_ed25519.pub").read_text().strip()
    authorized = "/root/.ssh/authorized_keys"
    script = (
        "install -d -m 700 /root/.ssh && "
        f"(grep -qxF '{public}' {authorized} 2>/dev/null || echo '{public}' >> {authorized})"
    )
    podman("exec", CONTAINER, "sh", "-c", script)
    return key


def ssh_through(key: Path, proxy_command: str, remote: str) -> tuple[float, str]:
    """``ssh`` into the container through ``proxy_command``: (seconds it took, its output)."""
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "LogLevel=ERROR",
        "-o", f"ProxyCommand={proxy_command}", f"root@{CONTAINER}", remote,
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env=client_env(), check=False
    )
    if result.returncode != 0:
        sys.exit(f"demo: ssh through WebRTC failed: {result.stderr}")
    return time.monotonic() - started, result.stdout.strip()


def prove(address: str) -> str:
    """Bytes through WebRTC: the echo channel, then a command run over SSH. The ProxyCommand."""
    echo = echo_round_trip(address, "hello through WebRTC")
    if echo != "hello through WebRTC":
        sys.exit(f"demo: the echo through WebRTC failed: it came back as {echo!r}")
    print("    echo channel: sent 'hello through WebRTC', got it back", flush=True)
    print(f"    web service: fetched / and got the page {fetch_title(address)!r}", flush=True)
    key = demo_key()
    proxy = " ".join([str(BIN / "homelab-p2p"), "pipe", "ssh", *client_flags(address)])
    remote = (
        'echo "ssh over WebRTC: $(hostname) says '
        '$(systemctl show -p StatusText --value homelab-p2p-bridge)"'
    )
    cold, said = ssh_through(key, f"{proxy} --no-agent", remote)
    warm, _ = ssh_through(key, proxy, remote)  # through the agent the echo's pipe started
    print(f"    {said}", flush=True)
    print(
        f"    ssh took {cold:.2f} s with a new WebRTC connection (--no-agent), {warm:.2f} s "
        "through the client agent's warm one",
        flush=True,
    )
    return proxy


def up() -> None:
    step("building the Debian 12 systemd image if it is missing (a minute or two, once)")
    subprocess.run(["scripts/build-systemd-image.sh", "bookworm"], cwd=ROOT, check=True)
    address, was_running = start_container()
    step(f"the homelab's own web service (scripts/demo-web/, on 127.0.0.1:8080 in {CONTAINER})")
    web_changed = install_web_service()
    print("    " + ("installed" if web_changed else "in place, unchanged"), flush=True)
    changes = provision()
    write_known_hosts()
    step("proving round trips through WebRTC data channels into the container")
    proxy = prove(address)
    flags = " ".join(client_flags(address))
    # The fragment (after #) prefills the signaling URL and never reaches a server; the
    # credential is never in a link: it is pasted into the page.
    fragment = urlencode({"url": "ws://127.0.0.1:8765/prod"})
    if was_running and not web_changed and changes == 0:
        outcome = (
            f"Nothing changed: {CONTAINER} was running, its web service was in place and Ansible "
            "changed nothing (changed=0)."
        )
    else:
        outcome = f"{CONTAINER} is set up ({changes} Ansible tasks changed something)."
    print(f"""
  {outcome}
  The homelab is the container {CONTAINER} ({address}); this machine is the laptop.
  Signaling: ws://{address}:8765/prod
  Client credential (ssh and web): {CLIENT}
  The commands below work from any directory.

  In a browser on this machine, load that credential and connect:
    - the homelab's web service as a whole app (service "web"), through WebRTC:
      http://127.0.0.1:8765/proxy.html#{fragment}
    - the library's demo page (one request at a time, the connection's state explained):
      http://127.0.0.1:8765/#{fragment}

  Fetch the web service's page over WebRTC, as curl would:
      {BIN}/homelab-p2p fetch web / {flags}
  SSH into it over WebRTC (the known-hosts file holds this container's key):
      ssh -i {STATE}/id_ed25519 -o UserKnownHostsFile={KNOWN_HOSTS} \\
          -o ProxyCommand="{proxy}" root@{CONTAINER}
  Or forward a port:
      {BIN}/homelab-p2p forward ssh --listen 127.0.0.1:2222 {flags}
  The troubleshooting guide's echo test through signaling:
      {BIN}/homelab-p2p echo {flags}
  Logs (podman needs this machine's settings, scripts/podman-env.sh):
      . {ROOT}/scripts/podman-env.sh; podman exec {CONTAINER} journalctl -u 'homelab-p2p-*' -f

  Your commands start a client agent that keeps the connection warm (docs/client.md); it
  ends after 10 minutes idle. Remove it all: make demo-clean (in {ROOT})
""")


def down() -> None:
    """Remove what `up` made; say what is kept, and why."""
    agent = BIN / "homelab-p2p"
    if agent.exists():
        # The demo's own agent, and the one your commands started (it served this homelab).
        for socket in (AGENT_SOCKET, None):
            env = {**os.environ, "HOMELAB_P2P_AGENT_SOCKET": str(socket)} if socket else None
            stop = [str(agent), "agent", "--stop"]
            stopped = subprocess.run(stop, capture_output=True, text=True, env=env, check=False)
            if stopped.returncode == 0 and stopped.stdout.startswith("Stopped"):
                print(f"demo: {stopped.stdout.strip()}")
    if podman("container", "exists", CONTAINER, check=False).returncode == 0:
        podman("rm", "--force", CONTAINER)
        print(f"demo: removed the container {CONTAINER}")
    if podman("image", "exists", IMAGE, check=False).returncode == 0:
        podman("rmi", IMAGE, check=False)
        print(f"demo: removed the image {IMAGE}")
    for directory in (STATE, CREDENTIALS):
        if directory.exists():
            shutil.rmtree(directory)
            print(
                f"demo: removed {directory}/ (with the SSH key and known-hosts file)"
                if directory == STATE
                else f"demo: removed {directory}/"
            )
    credentials = CREDENTIALS.parent
    if credentials.is_dir() and not any(credentials.iterdir()):
        credentials.rmdir()
        print(f"demo: removed {credentials}/ (empty)")
    if PODMAN_CONFIG.is_dir():
        shutil.rmtree(PODMAN_CONFIG)
        print(
            f"demo: removed {PODMAN_CONFIG}/ (podman's settings for this machine; "
            "written again when needed)"
        )
    kept = [
        f"{ROOT}/.cache/wheelhouse/: the wheels built and downloaded for the homelab; the next "
        "`make demo` reuses them (`make clean` removes them)",
        f"{ROOT}/.venv/: the project and its tools (`make clean` removes it)",
        "the Debian packages `make demo` installed (podman, debootstrap, ...): others may use them",
    ]
    if credentials.is_dir():
        kept.append(f"{credentials}/: other inventories' credentials (not the demo's)")
    print("demo: kept:\n" + "\n".join(f"  - {line}" for line in kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down"))
    {"up": up, "down": down}[parser.parse_args().action]()


if __name__ == "__main__":
    main()
