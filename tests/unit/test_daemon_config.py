"""The daemon's config: every key checked on load, one sentence naming the key when wrong."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab_server.config import KNOWN_KEYS, load_config, parse_config
from lab import OPERATOR, credential, credential_file
from p2p_runtime.configfile import ConfigError
from p2p_webrtc.datapath import AckPolicy, DataPath, DataPathOptions

IDENTITY = str(credential_file(credential("homelab", "laptop")))
"""A homelab credential for 'laptop' (the lab's operator issued it)."""
BASICS = f"signaling_url: ws://127.0.0.1:1/prod\ntoken: t\nidentity_file: {IDENTITY}\n"

VALID: dict[str, Any] = {
    "signaling_url": "wss://abc123.execute-api.us-east-1.amazonaws.com/prod",
    "token": "hp1.x.y",
    "identity_file": IDENTITY,
    "name": "laptop",
    "ice_servers": [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": ["turn:turn.example.org:3478?transport=udp"], "username": "u", "credential": "p"},
    ],
    "ice_port_range": [50000, 50100],
    "services": {"ssh": "tcp://127.0.0.1:22", "web": "http://127.0.0.1:8080/app"},
    "max_peers": 32,
}


def with_(**changes: Any) -> dict[str, Any]:
    config = dict(VALID)
    for key, value in changes.items():
        if value is ...:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def test_the_design_example_loads() -> None:
    config = parse_config(VALID)
    assert config.name == "laptop"
    assert [s.url for s in config.ice_servers] == [
        "stun:stun.example.org:3478",
        "turn:turn.example.org:3478?transport=udp",
    ]
    assert config.ice_servers[1].username == "u"
    assert config.ice_port_range == (50000, 50100)
    assert config.services["ssh"].url == "tcp://127.0.0.1:22"
    assert config.services["web"].base_path == "/app"
    assert config.max_connection_age < 7200
    assert config.ping_interval <= 300


def test_defaults_are_the_originals() -> None:
    config = parse_config(
        {"signaling_url": "ws://127.0.0.1:8765/prod", "token": "t", "identity_file": IDENTITY}
    )
    assert config.name == "laptop"
    assert [s.url for s in config.ice_servers] == ["stun:stun.l.google.com:19302"]
    assert config.ice_port_range is None
    assert config.data_path == DataPathOptions(DataPath.FAST, AckPolicy.RFC)
    assert parse_config(with_(ice_servers=[])).ice_servers == ()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"data_path": "standard"}, DataPathOptions(DataPath.STANDARD, AckPolicy.RFC)),
        ({"ack_policy": "aggressive"}, DataPathOptions(DataPath.FAST, AckPolicy.AGGRESSIVE)),
        (
            {"data_path": "fast", "ack_policy": "rfc"},
            DataPathOptions(DataPath.FAST, AckPolicy.RFC),
        ),
    ],
)
def test_the_data_path_options(changes: dict[str, Any], expected: DataPathOptions) -> None:
    assert parse_config(with_(**changes)).data_path == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"signaling_url": ...}, "signaling_url: missing (it is required)"),
        (
            {"signaling_url": "https://x/prod"},
            "signaling_url: 'https://x/prod' is not a ws:// or wss:// URL",
        ),
        ({"token": ...}, "token, token_file: give exactly one of them"),
        ({"token_file": "/x"}, "token, token_file: give exactly one of them"),
        ({"name": "my laptop"}, "name: 'my laptop' is not valid"),
        ({"max_peers": "many"}, "max_peers: must be a whole number from 1 to 1000, not 'many'"),
        ({"max_peers": 0}, "max_peers: must be a whole number from 1 to 1000, not 0"),
        (
            {"peer_connect_timeout": 1},
            "peer_connect_timeout: must be a number from 5 to 300, not 1",
        ),
        (
            {"max_channels_per_peer": 2.5},
            "max_channels_per_peer: must be a whole number from 1 to 1024, not 2.5",
        ),
        (
            {"max_offers_per_minute": 0},
            "max_offers_per_minute: must be a whole number from 1 to 600, not 0",
        ),
        ({"ice_port_range": [50100, 50000]}, "ice_port_range: must be [LOW, HIGH]"),
        ({"ice_port_range": [80, 90]}, "ice_port_range: must be [LOW, HIGH] with 1024"),
        (
            {"ice_servers": [{"urls": "http://x"}]},
            "ice_servers[0]: 'http://x' is not a STUN or TURN URL",
        ),
        (
            {"ice_servers": [{"urls": "turn:x"}]},
            "ice_servers[0]: 'turn:x' is a TURN server: it needs a username",
        ),
        ({"ice_servers": [{"url": "stun:x"}]}, "ice_servers[0]: must be a mapping with 'urls'"),
        ({"ice_servers": "stun:x"}, "ice_servers: must be a list"),
        (
            {"services": {"ssh": "ssh://127.0.0.1:22"}},
            "services.ssh: 'ssh://127.0.0.1:22' is not a tcp://",
        ),
        ({"services": {"ssh": "tcp://127.0.0.1"}}, "services.ssh: 'tcp://127.0.0.1' needs a port"),
        ({"services": {"echo": "tcp://127.0.0.1:7"}}, "services.echo: 'echo' is built in"),
        ({"services": {"a b": "tcp://127.0.0.1:7"}}, "services.a b: a label is 1-64"),
        ({"servces": {}}, "servces: unknown key; did you mean 'services'?"),
        ({"ping_interval": 600}, "ping_interval: must be a number from 1 to 300"),
        ({"max_connection_age": 9000}, "max_connection_age: must be a number from 10 to 7140"),
        ({"log_level": "LOUD"}, "log_level: use one of DEBUG, INFO, WARNING, ERROR"),
        ({"data_path": "turbo"}, "data_path: 'turbo' is not one of fast, standard"),
        ({"data_path": ["fast"]}, "data_path: ['fast'] is not one of fast, standard"),
        ({"ack_policy": "RFC"}, "ack_policy: 'RFC' is not one of rfc, aggressive"),
        ({"ack_polcy": "rfc"}, "ack_polcy: unknown key; did you mean 'ack_policy'?"),
        ({"datapath": "fast"}, "datapath: unknown key; did you mean 'data_path'?"),
    ],
)
def test_each_problem_names_its_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(with_(**changes), "config.yml")
    assert f"config.yml: {message}" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_token_file_is_read_now_and_again_at_each_connection(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    with pytest.raises(ConfigError, match=r"token_file: cannot read .*No such file"):
        parse_config(with_(token=..., token_file=str(token_file)))
    token_file.write_text("first\n")
    config = parse_config(with_(token=..., token_file=str(token_file)))
    assert config.read_token() == "first"
    token_file.write_text("rotated\n")
    assert config.read_token() == "rotated"


def test_yaml_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("signaling_url: ws://x/prod\nservices: [unclosed\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line 3"):
        load_config(path)


def test_the_daemon_exits_2_with_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(BASICS + "max_peers: lots\n")
    daemon = Path(sys.executable).with_name("homelab_server")
    for argv, expected in (
        ([str(daemon), "--config", str(path)], "max_peers: must be a whole number"),
        ([str(daemon), "--config", str(tmp_path / "absent.yml")], "cannot read the configuration"),
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_check_says_whether_the_configuration_is_usable_without_starting(tmp_path: Path) -> None:
    """`homelab_server --check` (what diagnose.yml runs): 0 and a summary, or 2 and the key."""
    daemon = Path(sys.executable).with_name("homelab_server")
    good = tmp_path / "good.yml"
    good.write_text(BASICS + "services: {ssh: tcp://127.0.0.1:22}\n")
    bad = tmp_path / "bad.yml"
    bad.write_text(BASICS + "max_peers: lots\n")
    usable = subprocess.run(
        [str(daemon), "--config", str(good), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert usable.returncode == 0
    assert usable.stdout == (
        f"{good}: usable; registers as 'laptop' at ws://127.0.0.1:1/prod, 1 service(s)\n"
    )
    unusable = subprocess.run(
        [str(daemon), "--config", str(bad), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert unusable.returncode == 2
    assert "max_peers: must be a whole number" in unusable.stderr


ROLE = Path(__file__).parents[2] / "roles" / "homelab_server"


def test_the_role_writes_every_key_with_the_daemons_choices_and_defaults() -> None:
    """roles/homelab_server: config.yml.j2 sets every key, argument_specs.yml and defaults agree."""
    template = (ROLE / "templates" / "config.yml.j2").read_text()
    written = set(re.findall(r"^  '(\w+)': homelab_server_\w+", template, re.MULTILINE))
    assert written == set(KNOWN_KEYS) - {"token"}  # the role always uses token_file
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    daemon = DataPathOptions()
    for key, enum, default in (
        ("data_path", DataPath, daemon.path),
        ("ack_policy", AckPolicy, daemon.ack_policy),
    ):
        variable = f"homelab_server_{key}"
        assert options[variable]["choices"] == [member.value for member in enum]
        assert options[variable]["default"] == defaults[variable] == default.value
        assert f"'{key}': {variable}," in template
    config = parse_config(
        {"signaling_url": "ws://h:1/prod", "token": "t", "identity_file": IDENTITY}
    )
    for key in (
        "max_peers",
        "peer_connect_timeout",
        "max_channels_per_peer",
        "max_offers_per_minute",
    ):
        variable = f"homelab_server_{key}"
        assert options[variable]["default"] == defaults[variable] == getattr(config, key)


def test_the_identity_must_be_this_homelabs_current_one_from_an_operator(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"identity_file: missing \(it is required\).*credential"):
        parse_config(with_(identity_file=...))
    with pytest.raises(ConfigError, match=r"identity_file: cannot read the credential file"):
        parse_config(with_(identity_file=str(tmp_path / "absent.json")))
    nas = credential_file(credential("homelab", "nas"), tmp_path / "nas.json")
    with pytest.raises(ConfigError, match=r"name: 'laptop', but identity_file certifies .*'nas'"):
        parse_config(with_(identity_file=str(nas)))
    client = credential_file(credential("client", "laptop"), tmp_path / "client.json")
    with pytest.raises(ConfigError, match=r"identity_file: its certificate is a client's"):
        parse_config(with_(identity_file=str(client)))
    old = credential("homelab", "laptop", ttl=60, now=1_000_000)
    expired = credential_file(old, tmp_path / "old.json")
    with pytest.raises(
        ConfigError, match=r"identity_file: the credential of homelab 'laptop'.* expired at 1970"
    ):
        parse_config(with_(identity_file=str(expired)))
    assert OPERATOR  # the lab's operator signed them all


def test_a_revocation_file_must_be_readable_at_start(tmp_path: Path) -> None:
    listed = tmp_path / "revoked.json"
    with pytest.raises(ConfigError, match=r"revocation_file: cannot read the revocation list"):
        parse_config(with_(revocation_file=str(listed)))
    listed.write_text('{"revoked": [{"name": "x"}]}')
    with pytest.raises(
        ConfigError, match=r'revocation_file: .*every entry of "revoked" needs an "id"'
    ):
        parse_config(with_(revocation_file=str(listed)))
    listed.write_text('{"revoked": []}')
    assert parse_config(with_(revocation_file=str(listed))).revocation_file == listed
