"""``homelab-p2p token``: issue tokens and make secrets, as a person types them."""

import stat
import subprocess
import sys
from pathlib import Path

from p2p_protocol.tokens import verify_token
from p2p_runtime.credentials import load_secret_file

CLI = Path(sys.executable).with_name("homelab-p2p")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=30, check=False
    )


def issue_laptop_token(secret: Path, ttl: str) -> subprocess.CompletedProcess[str]:
    return run(
        "token",
        "issue",
        "--role",
        "homelab",
        "--name",
        "laptop",
        "--ttl",
        ttl,
        "--secret-file",
        str(secret),
    )


def test_new_secret_then_issue_a_token_that_verifies(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    made = run("token", "new-secret", "--out", str(secret))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    issued = issue_laptop_token(secret, "30d")
    assert issued.returncode == 0, issued.stderr
    claims = verify_token(load_secret_file(secret), issued.stdout.strip())
    assert (claims.role, claims.name) == ("homelab", "laptop")


def test_new_secret_does_not_overwrite_without_force(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep me, I am thirty-two bytes or more long\n")
    refused = run("token", "new-secret", "--out", str(secret))
    assert refused.returncode == 2
    assert "already exists; pass --force" in refused.stderr
    assert secret.read_text().startswith("keep me")
    assert run("token", "new-secret", "--out", str(secret), "--force").returncode == 0
    assert not secret.read_text().startswith("keep me")


def test_errors_are_one_sentence_with_status_2(tmp_path: Path, secret_file: Path) -> None:
    cases = [
        (
            ["--role", "client", "--name", "alice", "--secret-file", str(tmp_path / "none")],
            "cannot read the secret file",
        ),
        (
            ["--role", "client", "--name", "bad name", "--secret-file", str(secret_file)],
            "name 'bad name' is not valid",
        ),
        (
            [
                "--role",
                "client",
                "--name",
                "alice",
                "--ttl",
                "soon",
                "--secret-file",
                str(secret_file),
            ],
            "is not a lifetime",
        ),
        (
            ["--role", "root", "--name", "alice", "--secret-file", str(secret_file)],
            "invalid choice: 'root'",
        ),
    ]
    for args, message in cases:
        result = run("token", "issue", *args)
        assert result.returncode == 2, args
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_verify_checks_the_signature_the_claims_and_the_time_left(
    secret_file: Path, tmp_path: Path
) -> None:
    token = issue_laptop_token(secret_file, "10d").stdout

    def verify(*flags: str, text: str = token) -> subprocess.CompletedProcess[str]:
        argv = [str(CLI), "token", "verify", "--secret-file", str(secret_file), *flags]
        return subprocess.run(
            argv, input=text, capture_output=True, text=True, timeout=30, check=False
        )

    ok = verify("--role", "homelab", "--name", "laptop", "--min-ttl", "9d")
    assert ok.returncode == 0, ok.stderr
    assert '"name": "laptop"' in ok.stdout
    assert verify("--min-ttl", "11d").stderr.startswith("homelab-p2p: the token expired at")
    assert "the token's role is 'homelab', not 'client'" in verify("--role", "client").stderr
    assert "the token's name is 'laptop', not 'nas'" in verify("--name", "nas").stderr
    assert verify(text="hp1.forged.token").returncode == 1


def test_the_secret_can_come_from_an_environment_variable(secret_file: Path) -> None:
    """How Ansible passes a vault secret: in the environment, never on disk or in argv."""
    secret = secret_file.read_text().strip()
    issue = ["token", "issue", "--role", "client", "--name", "alice", "--homelab", "laptop"]
    issued = subprocess.run(
        [str(CLI), *issue, "--secret-env", "SIGNING_SECRET"],
        env={"SIGNING_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert issued.returncode == 0, issued.stderr
    assert verify_token(load_secret_file(secret_file), issued.stdout.strip()).name == "alice"

    for environment, message in [
        ({}, "the environment variable SIGNING_SECRET is not set or empty"),
        ({"SIGNING_SECRET": "short"}, "the environment variable SIGNING_SECRET holds 5 bytes"),
    ]:
        refused = subprocess.run(
            [str(CLI), "token", "verify", "--secret-env", "SIGNING_SECRET"],
            input=issued.stdout,
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode == 1
        assert message in refused.stderr
        assert "Traceback" not in refused.stderr


def test_the_secret_on_stdin_then_the_token_after_it() -> None:
    """--secret-stdin: the secret is stdin's first line (Ansible passes it so, off argv and
    the environment); verify reads the token from the rest of stdin."""
    secret = "a-secret-on-stdin-0123456789abcdef-0123456789"
    issue = ["token", "issue", "--role", "homelab", "--name", "laptop", "--secret-stdin"]
    issued = subprocess.run(
        [str(CLI), *issue], input=secret + "\n", capture_output=True, text=True, check=False
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert verify_token(secret.encode(), token).name == "laptop"
    verify = ["token", "verify", "--secret-stdin", "--role", "homelab"]
    given = f"{secret}\n{token}\n"
    checked = subprocess.run(
        [str(CLI), *verify], input=given, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert '"name": "laptop"' in checked.stdout
    short = subprocess.run(
        [str(CLI), *issue], input="short\n", capture_output=True, text=True, check=False
    )
    assert short.returncode == 2
    assert short.stderr.startswith("homelab-p2p: the secret on stdin holds 5 bytes")
