"""`make demo` / `make demo-clean`: the embedded default, brought up on this machine.

    python scripts/demo.py up     start the local signaling gateway (once) and prove an echo
    python scripts/demo.py down   stop it and remove .demo/

State lives in .demo/ (git-ignored): the signing secret, a client and a homelab token, the
gateway's pid, its stdout and its log. A second `up` finds the running gateway and reuses it.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".demo"
BIN = Path(sys.executable).parent
PORT = int(os.environ.get("DEMO_PORT", "8765"))
URL = f"ws://127.0.0.1:{PORT}/prod"
START_TIMEOUT = 20.0


def run_cli(*args: str) -> str:
    return subprocess.run(
        [str(BIN / "homelab-p2p"), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def ensure_credentials() -> tuple[str, str]:
    """The secret and the two tokens, made on the first run and kept."""
    STATE.mkdir(exist_ok=True)
    secret = STATE / "secret"
    if not secret.exists():
        run_cli("token", "new-secret", "--out", str(secret))
    tokens = []
    for role, name in (("client", "demo-client"), ("homelab", "laptop")):
        path = STATE / f"{role}.token"
        if not path.exists():
            token = run_cli(
                "token",
                "issue",
                "--role",
                role,
                "--name",
                name,
                "--ttl",
                "30d",
                "--secret-file",
                str(secret),
            )
            path.write_text(token + "\n")
            path.chmod(0o600)
        tokens.append(path.read_text().strip())
    return tokens[0], tokens[1]


def running_pid() -> int | None:
    """The pid of the gateway an earlier `up` started, if it still runs."""
    try:
        pid = int((STATE / "gateway.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"signaling-gateway" in cmdline else None


def start_gateway() -> int:
    out = (STATE / "gateway.out").open("w")
    log = (STATE / "gateway.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "signaling-gateway"),
            "--port",
            str(PORT),
            "--secret-file",
            str(STATE / "secret"),
        ],
        stdout=out,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (STATE / "gateway.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while "Serving ws://" not in (STATE / "gateway.out").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log_text = (STATE / "gateway.log").read_text()
            sys.exit(f"demo: the gateway did not start; its log says:\n{log_text}")
        time.sleep(0.05)
    return process.pid


def prove_echo(client_token: str) -> dict[str, object]:
    """The troubleshooting guide's manual test: a message to "me" comes back."""
    with connect(f"{URL}?token={client_token}", open_timeout=10) as ws:
        ws.send(json.dumps({"action": "sendSignal", "to": "me", "data": "hello from make demo"}))
        reply: dict[str, object] = json.loads(ws.recv(timeout=10))
    if reply.get("data") != "hello from make demo":
        sys.exit(f"demo: the echo came back wrong: {reply}")
    return reply


def up() -> None:
    client_token, _ = ensure_credentials()
    pid = running_pid()
    state = "already running"
    if pid is None:
        pid, state = start_gateway(), "started"
    reply = prove_echo(client_token)
    print(f"""
  ✓ signaling gateway {state}: {URL}  (pid {pid}, log .demo/gateway.log)
  ✓ echo through it: {json.dumps(reply)}

  Run the troubleshooting guide's echo test yourself, with any WebSocket client:
      .venv/bin/python -m websockets "{URL}?token=$(cat .demo/client.token)"
  then type:
      {{"action":"sendSignal","to":"me","data":"test"}}
  (or wscat -c "<the same URL>"). A homelab token, allowed to register as "laptop",
  is in .demo/homelab.token. Watch the handler's log: tail -f .demo/gateway.log

  Stop it all: make demo-clean
""")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (an exited process nobody has reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def down() -> None:
    pid = running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"demo: stopped the signaling gateway (pid {pid})")
    for path in sorted(STATE.glob("*")) if STATE.exists() else []:
        path.unlink()
    if STATE.exists():
        STATE.rmdir()
    print("demo: removed .demo/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down"))
    {"up": up, "down": down}[parser.parse_args().action]()


if __name__ == "__main__":
    main()
