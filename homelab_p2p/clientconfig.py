"""The client's connection options: command-line flags over ``client.yml`` over defaults.

``~/.config/homelab-p2p/client.yml`` (or ``--config FILE``) may hold ``signaling_url``,
``credential_file`` (the client's credential, which the operator issues: it proves who the
client is to the homelab, and holds the signaling token unless ``token`` or ``token_file``
gives another), ``target``, ``ice_servers`` (as in the daemon's config),
``timeout``, ``data_path``, ``ack_policy``, ``fall_forward`` (seconds between attempts at a
direct path while relayed; 0: never), ``agent`` (``auto``, the default, or ``off``) and
``agent_idle_timeout`` (seconds; docs/client.md). Without any ICE server anywhere, the client
uses the original system's default STUN server, as the daemon does; ``--ice-server none``
means no server at all.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab_p2p.client import ClientOptions
from p2p_protocol.iceservers import ORIGINAL_DEFAULT, IceServer, parse_ice_servers, parse_ice_url
from p2p_protocol.identity import IdentityError
from p2p_protocol.names import DEFAULT_NAME
from p2p_runtime.configfile import ConfigError, read_yaml
from p2p_runtime.credentials import TokenFileError, read_token_file
from p2p_runtime.identity import Credential, load_credential
from p2p_webrtc import IcePolicy
from p2p_webrtc.datapath import AckPolicy, DataPath, DataPathOptions, parse_data_path

DEFAULT_CONFIG = Path("~/.config/homelab-p2p/client.yml")
DEFAULT_CREDENTIAL = Path("~/.config/homelab-p2p/credential.json")
CLIENT_KEYS = (
    "signaling_url",
    "credential_file",
    "token",
    "token_file",
    "target",
    "ice_servers",
    "timeout",
    "data_path",
    "ack_policy",
    "fall_forward",
    "agent",
    "agent_idle_timeout",
)
DEFAULT_FALL_FORWARD = 30.0
DEFAULT_AGENT_IDLE_TIMEOUT = 600.0


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--signaling-url", help="ws:// or wss:// URL of the signaling service")
    group.add_argument(
        "--credential-file",
        type=Path,
        help=f"the client's credential, from the operator (default: {DEFAULT_CREDENTIAL})",
    )
    tokens = group.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token", help="a client token, if not the credential's (see `homelab-p2p token issue`)"
    )
    tokens.add_argument("--token-file", type=Path, help="file holding the client token")
    group.add_argument("--target", help=f"the homelab's registered name (default: {DEFAULT_NAME})")
    group.add_argument(
        "--ice-server",
        action="append",
        metavar="URL",
        help="STUN or TURN server, repeatable (turn: URLs take --ice-username/--ice-credential); "
        "'none' for no server",
    )
    group.add_argument("--ice-username", help="username for the TURN servers")
    group.add_argument("--ice-credential", help="credential for the TURN servers")
    group.add_argument("--relay-only", action="store_true", help="use TURN relays only (testing)")
    group.add_argument(
        "--timeout", type=float, help="seconds each connection step may take (default: 20)"
    )
    group.add_argument(
        "--data-path",
        choices=[p.value for p in DataPath],
        help="fast (the default) or standard (aiortc's own); see docs/performance.md",
    )
    group.add_argument(
        "--ack-policy",
        choices=[p.value for p in AckPolicy],
        help="SCTP acknowledgements on the fast path: rfc (the default, RFC 9260) or aggressive "
        "(fewer SACKs, longer bursts; may overflow shallow buffers, see docs/performance.md)",
    )
    group.add_argument(
        "--fall-forward",
        type=float,
        metavar="SECONDS",
        help="while relayed, try a direct path this often (default: 30; 0: never)",
    )
    group.add_argument(
        "--no-agent",
        action="store_true",
        help="neither use nor start the client agent (docs/client.md)",
    )
    group.add_argument(
        "--config", type=Path, help=f"client configuration (default: {DEFAULT_CONFIG})"
    )


def _load_file(path: Path | None) -> dict[str, Any]:
    explicit = path is not None
    path = (path or DEFAULT_CONFIG).expanduser()
    if not path.exists():
        if explicit:
            raise ConfigError(f"cannot read the client configuration {path}: it does not exist")
        return {}
    data = read_yaml(path, "the client configuration") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values")
    for key in data:
        if key not in CLIENT_KEYS:
            raise ConfigError(f"{path}: {key}: unknown key; known keys: {', '.join(CLIENT_KEYS)}")
    return data


def _read_token(path: Path) -> str:
    try:
        return read_token_file(path)
    except TokenFileError as exc:
        raise ConfigError(str(exc)) from None


def _credential(args: argparse.Namespace, file: dict[str, Any], needed: bool) -> Credential | None:
    explicit = args.credential_file or file.get("credential_file")
    path = Path(explicit or DEFAULT_CREDENTIAL).expanduser()
    if not explicit and not path.exists():
        if not needed:
            return None
        raise ConfigError(
            "no credential: pass --credential-file or set credential_file in "
            f"{DEFAULT_CONFIG}; the operator issues one (`homelab-p2p credential issue`, "
            "docs/security.md)"
        )
    try:
        return load_credential(path)
    except IdentityError as exc:
        raise ConfigError(str(exc)) from None


def _ice_servers(args: argparse.Namespace, file: dict[str, Any]) -> tuple[IceServer, ...]:
    if args.ice_server:
        if args.ice_server == ["none"]:
            return ()
        try:
            return tuple(
                parse_ice_url(url, args.ice_username, args.ice_credential)
                for url in args.ice_server
            )
        except ValueError as exc:
            raise ConfigError(f"--ice-server: {exc}") from None
    try:
        return parse_ice_servers(file.get("ice_servers", [{"urls": ORIGINAL_DEFAULT}]))
    except ValueError as exc:
        raise ConfigError(f"client configuration: {exc}") from None


def _data_path(args: argparse.Namespace, file: dict[str, Any]) -> DataPathOptions:
    path = args.data_path or file.get("data_path", DataPath.FAST.value)
    ack_policy = args.ack_policy or file.get("ack_policy", AckPolicy.RFC.value)
    try:
        return parse_data_path(path, ack_policy)
    except ValueError as exc:  # only a file's value can be wrong: argparse checks the flags
        raise ConfigError(f"client configuration: {exc}") from None


def _seconds(name: str, value: Any, zero_allowed: bool) -> float:
    """``value`` as seconds; ConfigError naming ``name`` when it is not (0 only if allowed)."""
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not zero_allowed and not (number and value > 0):
        raise ConfigError(f"{name}: {value!r} is not a positive number of seconds")
    if not (number and value >= 0):
        raise ConfigError(f"{name}: {value!r} is not a number of seconds")
    return float(value)


@dataclass(frozen=True)
class AgentSettings:
    enabled: bool
    idle_timeout: float


def agent_settings(args: argparse.Namespace) -> AgentSettings:
    """Whether commands go through the client agent, and how long it lives idle."""
    file = _load_file(args.config)
    mode = file.get("agent", "auto")
    if mode not in ("auto", "off", True, False):  # YAML reads a bare off as false
        raise ConfigError(f"agent: {mode!r} is neither auto nor off")
    idle = file.get("agent_idle_timeout", DEFAULT_AGENT_IDLE_TIMEOUT)
    return AgentSettings(
        enabled=mode in ("auto", True) and not args.no_agent,
        idle_timeout=_seconds("agent_idle_timeout", idle, zero_allowed=False),
    )


def client_options(args: argparse.Namespace, needs_credential: bool = True) -> ClientOptions:
    """The options the flags and the configuration file give; ConfigError says what is missing."""
    file = _load_file(args.config)
    url = args.signaling_url or file.get("signaling_url")
    if not url:
        raise ConfigError(
            f"no signaling URL: pass --signaling-url or set signaling_url in {DEFAULT_CONFIG}"
        )
    credential = _credential(args, file, needs_credential)
    if args.token:
        token = args.token
    elif args.token_file:
        token = _read_token(args.token_file)
    elif file.get("token"):
        token = str(file["token"])
    elif file.get("token_file"):
        token = _read_token(Path(file["token_file"]))
    elif credential is not None and credential.signaling_token:
        token = credential.signaling_token
    else:
        raise ConfigError(
            "no token: pass --token or --token-file, or set token_file in "
            f"{DEFAULT_CONFIG}, or use a credential that holds a signaling token"
        )
    timeout = args.timeout if args.timeout is not None else file.get("timeout", 20.0)
    seconds = _seconds("timeout", timeout, zero_allowed=False)
    return ClientOptions(
        signaling_url=str(url),
        token=token,
        target=args.target or str(file.get("target", DEFAULT_NAME)),
        credential=credential,
        ice=IcePolicy(_ice_servers(args, file)),
        timeout=seconds,
        relay_only=args.relay_only,
        data_path=_data_path(args, file),
        fall_forward=_seconds(
            "fall_forward",
            args.fall_forward
            if args.fall_forward is not None
            else file.get("fall_forward", DEFAULT_FALL_FORWARD),
            zero_allowed=True,
        ),
    )
