"""The daemon's configuration file (``/etc/homelab-p2p-bridge/config.yml``), read and checked.

Every problem is one sentence that names the key: ``config.yml: max_peers: must be a whole
number from 1 to 1000, not 'many'``. The daemon exits with status 2 on any of them.
"""

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from p2p_protocol.iceservers import ORIGINAL_DEFAULT, IceServer, parse_ice_servers
from p2p_protocol.identity import IdentityError
from p2p_protocol.names import (
    DEFAULT_NAME,
    ECHO_LABEL,
    LOG_LEVELS,
    NAME_RULE,
    is_valid_label,
    is_valid_name,
)
from p2p_runtime.addresses import split_host_port
from p2p_runtime.configfile import ConfigError, read_yaml
from p2p_runtime.credentials import TokenFileError, read_token_file
from p2p_runtime.identity import Credential, load_credential, verify_certificate
from p2p_runtime.revocation import RevocationList
from p2p_webrtc.datapath import AckPolicy, DataPath, DataPathOptions, parse_data_path

SERVICE_SCHEMES = ("tcp", "http")


@dataclass(frozen=True)
class Service:
    """A local endpoint the homelab offers under a data channel label."""

    label: str
    scheme: str
    host: str
    port: int
    base_path: str = ""

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.base_path}"


@dataclass(frozen=True)
class DaemonConfig:
    signaling_url: str
    name: str = DEFAULT_NAME
    token: str | None = None
    token_file: Path | None = None
    identity_file: Path = Path("/etc/homelab-p2p-bridge/identity.json")
    revocation_file: Path | None = None
    ice_servers: tuple[IceServer, ...] = ()
    ice_port_range: tuple[int, int] | None = None
    services: Mapping[str, Service] = field(default_factory=dict)
    max_peers: int = 32
    peer_connect_timeout: float = 30.0
    max_channels_per_peer: int = 64
    max_offers_per_minute: int = 10
    ping_interval: float = 240.0
    reconnect_max_delay: float = 30.0
    max_connection_age: float = 6600.0
    log_level: str = "INFO"
    data_path: DataPathOptions = field(default_factory=DataPathOptions)
    metrics_address: tuple[str, int] | None = None
    """(host, port) of the Prometheus metrics; None: not served."""
    status_socket: Path | None = None
    """Where ``homelab-p2p status`` reads the daemon's state; None: nowhere."""
    source: str = "config.yml"

    def read_token(self) -> str:
        """The token: inline, or the token file as it is now (so it can be rotated in place)."""
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        try:
            return read_token_file(self.token_file)
        except TokenFileError as exc:
            raise ConfigError(f"{self.source}: token_file: {exc}") from None

    def load_identity(self) -> Credential:
        """The homelab's credential, checked: the operator's, a homelab's, this name's, current."""
        try:
            identity = load_credential(self.identity_file)
            verify_certificate(identity.operator, identity.certificate_text, "homelab")
        except IdentityError as exc:
            raise ConfigError(f"{self.source}: identity_file: {exc}") from None
        if identity.certificate.name != self.name:
            raise ConfigError(
                f"{self.source}: name: {self.name!r}, but identity_file certifies homelab "
                f"{identity.certificate.name!r}; issue the identity for this name"
            )
        return identity

    def load_revocations(self) -> RevocationList:
        try:
            return RevocationList(self.revocation_file)
        except IdentityError as exc:
            raise ConfigError(f"{self.source}: revocation_file: {exc}") from None


class _Reader:
    """Takes keys out of the loaded mapping one by one; what is left over is unknown."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = dict(data)
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}")

    def take(self, key: str, default: Any = ..., *, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise ConfigError(f"{self.source}: {key}: missing (it is required)")
            return default
        return self.data.pop(key)

    def number(self, key: str, default: float, low: float, high: float, whole: bool = False) -> Any:
        value = self.take(key, default)
        kind = int if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            what = "a whole number" if whole else "a number"
            raise self.fail(key, f"must be {what} from {low:g} to {high:g}, not {value!r}")
        return value

    def reject_unknown(self, known: list[str]) -> None:
        for key in self.data:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"{self.source}: {key}: unknown key{hint}")


KNOWN_KEYS = [
    "signaling_url",
    "token",
    "token_file",
    "identity_file",
    "revocation_file",
    "name",
    "ice_servers",
    "ice_port_range",
    "services",
    "max_peers",
    "peer_connect_timeout",
    "max_channels_per_peer",
    "max_offers_per_minute",
    "ping_interval",
    "reconnect_max_delay",
    "max_connection_age",
    "log_level",
    "data_path",
    "ack_policy",
    "status_socket",
    "metrics_address",
]


def _services(reader: _Reader) -> dict[str, Service]:
    raw = reader.take("services", {})
    if not isinstance(raw, dict):
        raise reader.fail("services", "must map data channel labels to tcp:// or http:// URLs")
    services: dict[str, Service] = {}
    for label, url in raw.items():
        key = f"services.{label}"
        if not is_valid_label(label):
            raise reader.fail(key, "a label is 1-64 letters, digits, '.', '_' or '-'")
        if label == ECHO_LABEL:
            raise reader.fail(
                key, "'echo' is built in (it echoes, for diagnostics); pick another label"
            )
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in SERVICE_SCHEMES or not parts.hostname:
            raise reader.fail(key, f"{url!r} is not a tcp://HOST:PORT or http://HOST:PORT URL")
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None:
            raise reader.fail(key, f"{url!r} needs a port between 1 and 65535")
        if parts.scheme == "tcp" and parts.path not in ("", "/"):
            raise reader.fail(key, f"{url!r}: a tcp:// service has no path")
        services[label] = Service(label, parts.scheme, parts.hostname, port, parts.path.rstrip("/"))
    return services


def _port_range(reader: _Reader) -> tuple[int, int] | None:
    value = reader.take("ice_port_range", None)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 1024 <= value[0] <= value[1] <= 65535
    ):
        raise reader.fail(
            "ice_port_range",
            f"must be [LOW, HIGH] with 1024 <= LOW <= HIGH <= 65535, not {value!r}",
        )
    return value[0], value[1]


def _metrics_address(reader: _Reader) -> tuple[str, int] | None:
    value = reader.take("metrics_address", None)
    if value is None:
        return None
    address = split_host_port(str(value))
    if address is None:
        raise reader.fail(
            "metrics_address", f"must be HOST:PORT such as 127.0.0.1:9808, not {value!r}"
        )
    return address


def _data_path(reader: _Reader) -> DataPathOptions:
    path = reader.take("data_path", DataPath.FAST.value)
    ack_policy = reader.take("ack_policy", AckPolicy.RFC.value)
    try:
        return parse_data_path(path, ack_policy)
    except ValueError as exc:  # its message starts with the key
        raise ConfigError(f"{reader.source}: {exc}") from None


def _signaling_url(reader: _Reader) -> str:
    url = reader.take("signaling_url", required=True)
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("ws", "wss")
        or not urlsplit(url).hostname
    ):
        raise reader.fail("signaling_url", f"{url!r} is not a ws:// or wss:// URL")
    return url


def _token(reader: _Reader) -> tuple[str | None, Path | None]:
    """The inline token or the token file: exactly one of them."""
    token, token_file = reader.take("token", None), reader.take("token_file", None)
    if (token is None) == (token_file is None):
        raise ConfigError(f"{reader.source}: token, token_file: give exactly one of them")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise reader.fail("token", "must be a non-empty string")
    if token_file is not None and not isinstance(token_file, str):
        raise reader.fail("token_file", "must be a path")
    return (
        token.strip() if isinstance(token, str) else None,
        Path(token_file) if token_file else None,
    )


def _path(reader: _Reader, key: str) -> Path | None:
    value = reader.take(key, None)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise reader.fail(key, "must be a path")
    return Path(value)


def _name(reader: _Reader) -> str:
    name = reader.take("name", DEFAULT_NAME)
    if not is_valid_name(name):
        raise reader.fail("name", f"{name!r} is not valid: use {NAME_RULE}")
    assert isinstance(name, str)
    return name


def _ice_servers(reader: _Reader) -> tuple[IceServer, ...]:
    try:
        return parse_ice_servers(reader.take("ice_servers", [{"urls": ORIGINAL_DEFAULT}]))
    except ValueError as exc:  # its message starts with the key
        raise ConfigError(f"{reader.source}: {exc}") from None


def _log_level(reader: _Reader) -> str:
    log_level = str(reader.take("log_level", "INFO")).upper()
    if log_level not in LOG_LEVELS:
        raise reader.fail("log_level", f"use one of {', '.join(LOG_LEVELS)}")
    return log_level


def parse_config(data: Any, source: str = "config.yml") -> DaemonConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: must be a mapping of keys to values (see docs/configuration.md)"
        )
    reader = _Reader(data, source)
    # Each key is checked in this order, so the first problem in the file is the one told.
    url = _signaling_url(reader)
    token, token_file = _token(reader)
    identity_file = _path(reader, "identity_file")
    if identity_file is None:
        raise reader.fail(
            "identity_file",
            "missing (it is required): the homelab's credential, which proves its name to "
            "clients and checks theirs; `homelab-p2p credential issue --kind homelab` writes "
            "one (docs/security.md)",
        )
    revocation_file = _path(reader, "revocation_file")
    name, ice_servers, log_level = _name(reader), _ice_servers(reader), _log_level(reader)
    config = DaemonConfig(
        signaling_url=url,
        name=name,
        token=token,
        token_file=token_file,
        identity_file=identity_file,
        revocation_file=revocation_file,
        ice_servers=ice_servers,
        ice_port_range=_port_range(reader),
        services=_services(reader),
        max_peers=reader.number("max_peers", 32, 1, 1000, whole=True),
        peer_connect_timeout=reader.number("peer_connect_timeout", 30.0, 5, 300),
        max_channels_per_peer=reader.number("max_channels_per_peer", 64, 1, 1024, whole=True),
        max_offers_per_minute=reader.number("max_offers_per_minute", 10, 1, 600, whole=True),
        ping_interval=reader.number("ping_interval", 240.0, 1, 300),
        reconnect_max_delay=reader.number("reconnect_max_delay", 30.0, 1, 3600),
        max_connection_age=reader.number("max_connection_age", 6600.0, 10, 7140),
        log_level=log_level,
        data_path=_data_path(reader),
        status_socket=_path(reader, "status_socket"),
        metrics_address=_metrics_address(reader),
        source=source,
    )
    reader.reject_unknown(KNOWN_KEYS)
    if config.token_file is not None:
        config.read_token()  # unreadable now is an error now, not at the first connection
    config.load_identity()
    config.load_revocations()
    return config


def load_config(path: Path) -> DaemonConfig:
    return parse_config(read_yaml(path, "the configuration"), str(path))
