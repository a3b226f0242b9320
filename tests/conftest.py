"""Shared fixtures, and the CI rule: with CI=true a test that would skip fails instead."""

import os
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from lab import SECRET, network_guard

IN_CI = os.environ.get("CI", "").lower() == "true"

# `pipe`, `fetch` and `forward` start a client agent on first use, which outlives them (for
# its idle timeout). Tests run them without one, inherited by every process they start,
# except tests/e2e/test_client_agent.py, which turns it on per command with a socket of its own.
os.environ["HOMELAB_P2P_AGENT"] = "off"

# In CI the generated examples are the same every run, so a failure there reproduces here.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if IN_CI else "dev")


def pytest_configure(config: pytest.Config) -> None:
    network_guard.install()


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: this test would have been skipped ({reason}); in CI it must run"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_skip_in_ci(report)
    return report


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "signaling-secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path
