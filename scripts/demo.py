"""`make demo` / `make demo-clean`: the whole system on this machine, in a systemd container.

    python scripts/demo.py up     build the image if needed, start the homelab-demo container,
                                  provision it with `ansible-playbook -i inventory/demo site.yml`,
                                  and prove a round trip through WebRTC to services inside it
    python scripts/demo.py down   remove the container, the image and the demo's files

The container plays the homelab and runs the local signaling gateway; this machine plays the
laptop. A second `up` reuses the running container (Ansible then changes nothing).
"""

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".demo"
# Everything the demo's play keeps on the controller (inventory/demo puts the operator's key,
# the clients and the revocation list here too), so that demo-clean removes it all.
CREDENTIALS = ROOT / "credentials" / "homelab-demo"
CLIENT = CREDENTIALS / "clients" / "demo.json"
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


def start_container() -> str:
    """The container, running and booted; its address on podman's network."""
    inspect = podman("inspect", "--format", "{{.State.Status}}", CONTAINER, check=False)
    state = inspect.stdout.strip()
    if state and not publishes_the_console():
        step(f"recreating container {CONTAINER}: it predates the ports the browser proxy needs")
        podman("rm", "--force", CONTAINER)
        state = ""
    if state == "running":
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
    return podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", CONTAINER).stdout.strip()


def publishes_the_console() -> bool:
    """Whether the container publishes the gateway's console and app ports on loopback."""
    ports = podman("port", CONTAINER, check=False).stdout
    return all(f"{port}/tcp -> 127.0.0.1:{port}" in ports for port in PUBLISHED_PORTS)


def provision() -> None:
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


def client_flags(address: str) -> list[str]:
    """The demo client's options: its credential proves it to the homelab and holds its token."""
    url = f"ws://{address}:8765/prod"
    return ["--signaling-url", url, "--credential-file", str(CLIENT), "--ice-server", "none"]


def echo_round_trip(address: str, message: str) -> str:
    """``homelab-p2p pipe echo``: write a line, read it back, and only then close stdin.

    (A data channel cannot be half-closed: closing stdin first would close the channel
    before the answer came back.)
    """
    argv = [str(BIN / "homelab-p2p"), "pipe", "echo", *client_flags(address)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as pipe:
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
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", f"ProxyCommand={proxy_command}", f"root@{CONTAINER}", remote,
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        sys.exit(f"demo: ssh through WebRTC failed: {result.stderr}")
    return time.monotonic() - started, result.stdout.strip()


def prove(address: str) -> str:
    """Bytes through WebRTC: the echo channel, then a command run over SSH. The ProxyCommand."""
    echo = echo_round_trip(address, "hello through WebRTC")
    if echo != "hello through WebRTC":
        sys.exit(f"demo: the echo through WebRTC failed: it came back as {echo!r}")
    print("    echo channel: sent 'hello through WebRTC', got it back", flush=True)
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
    step("building the systemd image if it is missing (about a minute, once)")
    subprocess.run(["scripts/build-systemd-image.sh"], cwd=ROOT, check=True)
    address = start_container()
    provision()
    step("proving a round trip through a WebRTC data channel into the container")
    proxy = prove(address)
    client = CLIENT.relative_to(ROOT)
    flags = f"--signaling-url ws://{address}:8765/prod --credential-file {client} --ice-server none"
    # The fragment (after #) prefills the signaling URL and never reaches a server; the
    # credential is never in a link: it is pasted into the page.
    fragment = urlencode({"url": "ws://127.0.0.1:8765/prod"})
    print(f"""
  The homelab is the container {CONTAINER} ({address}); this machine is the laptop.
  Signaling: ws://{address}:8765/prod    client credential: {client} (ssh and web)

  In a browser on this machine, load the credential {client} and connect:
    - open the homelab's web service as a whole app (service "web"), through WebRTC:
      http://127.0.0.1:8765/proxy.html#{fragment}
    - the library's demo page (one request at a time, the connection's details):
      http://127.0.0.1:8765/#{fragment}

  SSH into it over WebRTC:
      ssh -i .demo/id_ed25519 -o ProxyCommand="{proxy}" root@{CONTAINER}
  Or forward a port:
      .venv/bin/homelab-p2p forward ssh --listen 127.0.0.1:2222 {flags}
  The troubleshooting guide's echo test through signaling:
      .venv/bin/homelab-p2p echo {flags}
  Logs (podman needs scripts/podman-env.sh sourced on this machine):
      . scripts/podman-env.sh; podman exec {CONTAINER} journalctl -u 'homelab-p2p-*' -f

  The first pipe started the client agent (docs/client.md); it ends after 10 minutes idle.
  Remove it all: make demo-clean
""")


def down() -> None:
    if (BIN / "homelab-p2p").exists():  # the client agent the demo's pipes started
        stop = [str(BIN / "homelab-p2p"), "agent", "--stop"]
        stopped = subprocess.run(stop, capture_output=True, text=True, check=False)
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
            print(f"demo: removed {directory.relative_to(ROOT)}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down"))
    {"up": up, "down": down}[parser.parse_args().action]()


if __name__ == "__main__":
    main()
