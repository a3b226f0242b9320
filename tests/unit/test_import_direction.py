"""The direction of dependencies (pyproject.toml's import-linter contracts) holds, and the
check really fails on an import against it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "p2p_protocol",
    "p2p_runtime",
    "signaling_lambda",
    "signaling_gateway",
    "signaling_client",
    "p2p_webrtc",
    "homelab_server",
    "homelab_p2p",
]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and the contracts, to break on purpose."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def test_the_checkout_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("p2p_protocol/names.py", "import homelab_server.config", "Layers"),
        ("p2p_protocol/names.py", "import socket", "The protocol core"),
        ("p2p_runtime/tasks.py", "import p2p_webrtc", "Layers"),
        ("signaling_lambda/app.py", "import p2p_runtime.logs", "The Lambda zip"),
        ("homelab_p2p/echo.py", "import homelab_server.daemon", "Layers"),
        ("homelab_server/daemon.py", "import signaling_lambda.app", "Only the gateway"),
    ],
)
def test_an_import_against_the_direction_fails(
    tree: Path, module: str, line: str, contract: str
) -> None:
    path = tree / module
    path.write_text(f"{line}  # noqa\n" + path.read_text())
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    _, _, broken = result.stdout.partition("Broken contracts")
    assert contract in broken, result.stdout
