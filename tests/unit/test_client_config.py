"""The client's options: --data-path and --ack-policy over client.yml over the defaults."""

from pathlib import Path

import pytest

from homelab_p2p.cli import build_parser
from homelab_p2p.client import ClientOptions
from homelab_p2p.clientconfig import AgentSettings, agent_settings, client_options
from lab import credential, credential_file, default_client_file
from p2p_runtime.configfile import ConfigError
from p2p_webrtc.datapath import AckPolicy, DataPath, DataPathOptions

BASICS = f"signaling_url: ws://127.0.0.1:8765/prod\ncredential_file: {default_client_file()}\n"


def options(tmp_path: Path, file: str, *flags: str, command: str = "pipe") -> ClientOptions:
    """What ``homelab-p2p COMMAND`` runs with, given client.yml's text and the flags."""
    config = tmp_path / "client.yml"
    config.write_text(BASICS + file)
    service = ["ssh"] if command == "pipe" else []
    args = build_parser().parse_args([command, *service, "--config", str(config), *flags])
    return client_options(args)


def test_the_default_is_the_fast_path_with_rfc_acknowledgements(tmp_path: Path) -> None:
    assert options(tmp_path, "").data_path == DataPathOptions(DataPath.FAST, AckPolicy.RFC)


@pytest.mark.parametrize("command", ["pipe", "echo", "doctor"])
def test_the_flags_set_them_for_every_command(tmp_path: Path, command: str) -> None:
    chosen = options(tmp_path, "", "--data-path", "standard", command=command)
    assert chosen.data_path == DataPathOptions(DataPath.STANDARD, AckPolicy.RFC)
    chosen = options(tmp_path, "", "--ack-policy", "aggressive", command=command)
    assert chosen.data_path == DataPathOptions(DataPath.FAST, AckPolicy.AGGRESSIVE)


def test_the_file_sets_them_and_each_flag_wins_over_its_key(tmp_path: Path) -> None:
    file = "data_path: standard\nack_policy: aggressive\n"
    assert options(tmp_path, file).data_path == DataPathOptions(
        DataPath.STANDARD, AckPolicy.AGGRESSIVE
    )
    assert options(tmp_path, file, "--data-path", "fast").data_path == DataPathOptions(
        DataPath.FAST, AckPolicy.AGGRESSIVE
    )
    assert options(tmp_path, file, "--ack-policy", "rfc").data_path == DataPathOptions(
        DataPath.STANDARD, AckPolicy.RFC
    )


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("data_path: turbo\n", "data_path: 'turbo' is not one of fast, standard"),
        ("ack_policy: none\n", "ack_policy: 'none' is not one of rfc, aggressive"),
        ("ack_policy:\n", "ack_policy: None is not one of rfc, aggressive"),
    ],
)
def test_a_bad_value_in_the_file_is_one_sentence_naming_the_key(
    tmp_path: Path, file: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        options(tmp_path, file)
    assert str(refused.value) == f"client configuration: {message}"


def test_a_misspelled_key_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data-path: unknown key; known keys: .*data_path"):
        options(tmp_path, "data-path: standard\n")


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--data-path", "turbo"], "argument --data-path: invalid choice: 'turbo'"),
        (["--ack-policy", "RFC"], "argument --ack-policy: invalid choice: 'RFC'"),
    ],
)
def test_a_bad_flag_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], error: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        options(tmp_path, "", *flags)
    assert exited.value.code == 2
    assert error in capsys.readouterr().err


def test_the_credential_gives_the_token_unless_one_is_given(tmp_path: Path) -> None:
    chosen = options(tmp_path, "")
    assert chosen.credential is not None
    assert chosen.credential.certificate.name == "e2e"
    assert chosen.token == chosen.credential.signaling_token
    assert options(tmp_path, "token: other\n").token == "other"
    assert options(tmp_path, "", "--token", "flag").token == "flag"


def test_a_missing_or_broken_credential_is_one_sentence(tmp_path: Path) -> None:
    config = tmp_path / "client.yml"
    config.write_text("signaling_url: ws://127.0.0.1:8765/prod\n")
    missing = tmp_path / "none.json"
    args = build_parser().parse_args(
        ["pipe", "ssh", "--config", str(config), "--credential-file", str(missing)]
    )
    with pytest.raises(ConfigError, match=r"cannot read the credential file .*none\.json"):
        client_options(args)
    broken = tmp_path / "broken.json"
    held = credential_file(credential(), broken)
    held.write_text(held.read_text().replace('"key": "', '"key": "A'))
    args.credential_file = broken
    with pytest.raises(ConfigError, match="is not a usable credential: its key is 44"):
        client_options(args)


def test_only_the_signaling_echo_goes_without_a_credential(tmp_path: Path) -> None:
    config = tmp_path / "client.yml"
    config.write_text("signaling_url: ws://127.0.0.1:8765/prod\ntoken: t\n")
    for command, service in (("echo", []), ("pipe", ["ssh"]), ("doctor", [])):
        args = build_parser().parse_args([command, *service, "--config", str(config)])
        if command == "echo":
            assert client_options(args, needs_credential=False).credential is None
        else:
            with pytest.raises(ConfigError, match="no credential: pass --credential-file"):
                client_options(args)


def agent(tmp_path: Path, file: str, *flags: str) -> AgentSettings:
    config = tmp_path / "client.yml"
    config.write_text(BASICS + file)
    return agent_settings(
        build_parser().parse_args(["pipe", "ssh", "--config", str(config), *flags])
    )


def test_the_agent_is_on_unless_the_file_or_a_flag_says_off(tmp_path: Path) -> None:
    assert agent(tmp_path, "") == AgentSettings(enabled=True, idle_timeout=600.0)
    assert not agent(tmp_path, "agent: off\n").enabled  # YAML reads a bare off as false
    assert not agent(tmp_path, "agent: 'off'\n").enabled
    assert not agent(tmp_path, "", "--no-agent").enabled
    assert agent(tmp_path, "agent_idle_timeout: 30\n").idle_timeout == 30.0
    with pytest.raises(ConfigError, match="agent: 'sometimes' is neither auto nor off"):
        agent(tmp_path, "agent: sometimes\n")
    with pytest.raises(ConfigError, match="agent_idle_timeout: 0 is not a positive number"):
        agent(tmp_path, "agent_idle_timeout: 0\n")


def test_fall_forward_is_30_s_unless_told(tmp_path: Path) -> None:
    assert options(tmp_path, "").fall_forward == 30.0
    assert options(tmp_path, "fall_forward: 5\n").fall_forward == 5.0
    assert options(tmp_path, "fall_forward: 5\n", "--fall-forward", "0").fall_forward == 0.0
    with pytest.raises(ConfigError, match="fall_forward: -1 is not a number of seconds"):
        options(tmp_path, "fall_forward: -1\n")
