"""Starting the client agent: a failure to start it is one sentence, from one process."""

import os
import sys
from pathlib import Path

import pytest

from homelab_p2p import agentstart


def test_an_agent_that_cannot_be_started_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    pid = os.getpid()
    problem = agentstart.start_agent(tmp_path / "agent.sock", 600)
    # The short-lived child that starts the agent reported and ended: only we go on.
    assert os.getpid() == pid
    assert problem == "it could not be started: No such file or directory"
    assert not (tmp_path / "agent.sock").exists()
