"""The handler's configuration, read from its environment (Lambda) or given by the gateway.

| variable                  | meaning                                                          |
|---------------------------|------------------------------------------------------------------|
| REGISTRY_BACKEND          | ``dynamodb`` (default), ``lambda_env`` or ``memory``             |
| REGISTRY_TABLE            | DynamoDB table of name -> connection id (``dynamodb``)           |
| REGISTRY_TTL_SECONDS      | registration lifetime (default 7800 s: the 2 h cap + margin)     |
| SIGNALING_SECRET          | token signing secret, at least 32 bytes                          |
| SIGNALING_AUTH            | ``token`` (default) or ``off`` (local tests only)                |
| SIGNALING_REVOKED         | credential ids whose tokens are refused (comma-separated)        |
| APIGW_MANAGEMENT_ENDPOINT | management API URL; default ``https://{domainName}/{stage}``     |
| LOG_LEVEL                 | ``DEBUG`` (default, the guide's lines), ``INFO``, ``WARNING``... |
| AWS_LAMBDA_FUNCTION_NAME  | set by Lambda; the function ``lambda_env`` updates               |
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from p2p_protocol.names import LOG_LEVELS
from p2p_protocol.tokens import SecretError, check_secret

BACKENDS = ("dynamodb", "lambda_env", "memory")
DEFAULT_REGISTRY_TTL_SECONDS = 7800
_CREDENTIAL_ID = re.compile(r"[0-9a-f]{16}")


class ConfigError(ValueError):
    """The handler's configuration is unusable; str() names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    registry_backend: str = "memory"
    registry_table: str | None = None
    registry_ttl_seconds: int = DEFAULT_REGISTRY_TTL_SECONDS
    auth_enabled: bool = True
    secret: bytes | None = None
    management_endpoint: str | None = None
    function_name: str | None = None
    log_level: str = "DEBUG"
    revoked: frozenset[str] = field(default_factory=frozenset)
    """Credential ids whose tokens signaling refuses (Ansible keeps the list)."""

    def __post_init__(self) -> None:
        if self.registry_backend not in BACKENDS:
            raise ConfigError(
                f"REGISTRY_BACKEND is {self.registry_backend!r}; use one of {', '.join(BACKENDS)}"
            )
        if self.registry_backend == "dynamodb" and not self.registry_table:
            raise ConfigError("REGISTRY_TABLE is not set; the dynamodb registry needs a table name")
        if self.registry_backend == "lambda_env" and not self.function_name:
            raise ConfigError(
                "AWS_LAMBDA_FUNCTION_NAME is not set; the lambda_env registry updates the "
                "function it runs in, so it only works on Lambda"
            )
        if self.registry_ttl_seconds <= 0:
            raise ConfigError("REGISTRY_TTL_SECONDS must be a positive number of seconds")
        if self.auth_enabled:
            if self.secret is None:
                raise ConfigError(
                    "SIGNALING_SECRET is not set; every connection needs a signed token "
                    "(set SIGNALING_AUTH=off only for local tests)"
                )
            try:
                check_secret(self.secret, "SIGNALING_SECRET")
            except SecretError as exc:
                raise ConfigError(str(exc)) from None
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL is {self.log_level!r}; use one of {', '.join(LOG_LEVELS)}"
            )

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> "Settings":
        auth = env.get("SIGNALING_AUTH", "token").strip().lower()
        if auth not in ("token", "off"):
            raise ConfigError(f"SIGNALING_AUTH is {auth!r}; use token or off")
        ttl_text = env.get("REGISTRY_TTL_SECONDS", str(DEFAULT_REGISTRY_TTL_SECONDS))
        try:
            ttl = int(ttl_text)
        except ValueError:
            raise ConfigError(f"REGISTRY_TTL_SECONDS is {ttl_text!r}, not a whole number") from None
        secret = env.get("SIGNALING_SECRET")
        revoked = frozenset(re.split(r"[\s,]+", env.get("SIGNALING_REVOKED", "").strip())) - {""}
        for ident in revoked:
            if not _CREDENTIAL_ID.fullmatch(ident):
                raise ConfigError(
                    f"SIGNALING_REVOKED holds {ident[:40]!r}, not a credential id (16 hex digits)"
                )
        return cls(
            registry_backend=env.get("REGISTRY_BACKEND", "dynamodb").strip(),
            registry_table=env.get("REGISTRY_TABLE") or None,
            registry_ttl_seconds=ttl,
            auth_enabled=auth == "token",
            secret=secret.strip().encode() if secret else None,
            management_endpoint=env.get("APIGW_MANAGEMENT_ENDPOINT") or None,
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME") or None,
            log_level=env.get("LOG_LEVEL", "DEBUG").strip().upper(),
            revoked=revoked,
        )
