"""Where the handler keeps which homelab name maps to which connection id.

Three back ends, chosen by ``REGISTRY_BACKEND``:

- ``memory``: a dict in the process; the local gateway, where one process runs the handler.
- ``dynamodb``: one item per name in a table (partition key ``name``) holding
  ``connectionId``, ``registeredAt`` and ``expiresAt`` (the table's TTL attribute).
- ``lambda_env``: the original design. The function keeps the ``laptop`` homelab's id in
  its own ``LAPTOP_ID`` environment variable, written with UpdateFunctionConfiguration.

Registering always replaces (the newest connection of a homelab wins, which is how a
homelab rotates its connection). Dropping a stale entry is conditional on the entry still
holding the stale id, so a cleanup racing with a new registration never removes the new one.
"""

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from p2p_protocol.names import DEFAULT_NAME, id_label
from signaling_lambda.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient

LAPTOP_ID_VARIABLE = "LAPTOP_ID"
AWS_CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3)


class RegistryError(Exception):
    """The registry could not be read or written; str() says what to check."""


class RefusedName(ValueError):
    """This back end cannot hold the name asked for; str() says why."""


class Registry(Protocol):
    source: str
    """How log lines name where an id is kept ("environment variable", "registry item", ...)."""

    def lookup(self, name: str) -> str | None:
        """The connection id registered for ``name``, or None."""

    def register(self, name: str, connection_id: str) -> None:
        """Make ``name`` point at ``connection_id``, replacing any earlier registration."""

    def unregister(self, name: str, connection_id: str) -> bool:
        """Drop ``name`` if it still points at ``connection_id``; True if it did."""


def _aws_failure(what: str, exc: Exception, hint: str) -> RegistryError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}".rstrip(": ")
    else:
        detail = str(exc)
    return RegistryError(f"{what} failed ({detail}); {hint}")


class MemoryRegistry:
    source = "registry entry"

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str) -> str | None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._entries[name]
                return None
            return entry[0]

    def register(self, name: str, connection_id: str) -> None:
        with self._lock:
            self._entries[name] = (connection_id, self._clock() + self._ttl)

    def unregister(self, name: str, connection_id: str) -> bool:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry[0] != connection_id:
                return False
            del self._entries[name]
            return True


class DynamoDBRegistry:
    source = "registry item"

    def __init__(
        self,
        client: "DynamoDBClient",
        table: str,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table
        self._ttl = ttl_seconds
        self._clock = clock

    def _hint(self, action: str) -> str:
        return (
            f"check that table {self._table} exists in this region and that the function's "
            f"role allows dynamodb:{action} on it"
        )

    def lookup(self, name: str) -> str | None:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"name": {"S": name}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise _aws_failure(
                f"GetItem {name!r} from {self._table}", exc, self._hint("GetItem")
            ) from None
        if not item or "connectionId" not in item:
            return None
        # TTL deletion lags (up to days): an expired item is treated as gone.
        expires_at = item.get("expiresAt", {}).get("N")
        if expires_at is not None and float(expires_at) <= self._clock():
            return None
        return item["connectionId"]["S"]

    def register(self, name: str, connection_id: str) -> None:
        now = int(self._clock())
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "name": {"S": name},
                    "connectionId": {"S": connection_id},
                    "registeredAt": {"N": str(now)},
                    "expiresAt": {"N": str(now + self._ttl)},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_failure(
                f"PutItem {name!r} into {self._table}", exc, self._hint("PutItem")
            ) from None

    def unregister(self, name: str, connection_id: str) -> bool:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"name": {"S": name}},
                ConditionExpression="connectionId = :stale",
                ExpressionAttributeValues={":stale": {"S": connection_id}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False  # re-registered meanwhile: the newer entry stays
            raise _aws_failure(
                f"DeleteItem {name!r} from {self._table}", exc, self._hint("DeleteItem")
            ) from None
        except BotoCoreError as exc:
            raise _aws_failure(
                f"DeleteItem {name!r} from {self._table}", exc, self._hint("DeleteItem")
            ) from None
        return True


class LambdaEnvRegistry:
    """The original design: ``LAPTOP_ID`` in the function's own environment.

    A warm container's ``os.environ`` keeps the value it started with, so the variable is
    read from GetFunctionConfiguration, and written with the configuration's RevisionId
    so that two writers never overwrite each other blindly.
    """

    source = "environment variable"
    _ATTEMPTS = 10

    def __init__(
        self,
        client: "LambdaClient",
        function_name: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._function = function_name
        self._sleep = sleep

    def _hint(self, action: str) -> str:
        return f"the function's role needs lambda:{action} on function {self._function}"

    def _check_name(self, name: str) -> None:
        if name != DEFAULT_NAME:
            raise RefusedName(
                f"the lambda_env registry holds only the name {DEFAULT_NAME!r} "
                f"(in {LAPTOP_ID_VARIABLE}); use REGISTRY_BACKEND=dynamodb for other names"
            )

    def _configuration(self) -> tuple[dict[str, str], str]:
        try:
            config = self._client.get_function_configuration(FunctionName=self._function)
        except (ClientError, BotoCoreError) as exc:
            raise _aws_failure(
                f"GetFunctionConfiguration of {self._function}",
                exc,
                self._hint("GetFunctionConfiguration"),
            ) from None
        variables = dict(config.get("Environment", {}).get("Variables", {}))
        return variables, config.get("RevisionId", "")

    def lookup(self, name: str) -> str | None:
        if name != DEFAULT_NAME:
            return None
        variables, _ = self._configuration()
        return variables.get(LAPTOP_ID_VARIABLE) or None

    def _write(self, connection_id: str, only_if: str | None, wait: bool) -> bool:
        """Set LAPTOP_ID (to "" to clear it); with ``only_if``, only while it holds that id."""
        for attempt in range(self._ATTEMPTS):
            variables, revision = self._configuration()
            if only_if is not None and variables.get(LAPTOP_ID_VARIABLE) != only_if:
                return False
            variables[LAPTOP_ID_VARIABLE] = connection_id
            try:
                self._client.update_function_configuration(
                    FunctionName=self._function,
                    Environment={"Variables": variables},
                    RevisionId=revision,
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("PreconditionFailedException", "ResourceConflictException"):
                    # Another update got there first or is still being applied: read again.
                    self._sleep(min(0.2 * 2**attempt, 2.0))
                    continue
                raise _aws_failure(
                    f"UpdateFunctionConfiguration of {self._function}",
                    exc,
                    self._hint("UpdateFunctionConfiguration"),
                ) from None
            except BotoCoreError as exc:
                raise _aws_failure(
                    f"UpdateFunctionConfiguration of {self._function}",
                    exc,
                    self._hint("UpdateFunctionConfiguration"),
                ) from None
            if wait:
                self._wait_until_updated()
            return True
        raise RegistryError(
            f"{id_label(DEFAULT_NAME)} could not be written: function {self._function} kept "
            f"changing during {self._ATTEMPTS} attempts"
        )

    def _wait_until_updated(self) -> None:
        try:
            # function_updated polls GetFunctionConfiguration, which the function's role may
            # call already (function_updated_v2 would need GetFunction as well).
            self._client.get_waiter("function_updated").wait(
                FunctionName=self._function, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_failure(
                f"waiting for the configuration update of {self._function}",
                exc,
                "look at the function's LastUpdateStatusReason",
            ) from None

    def register(self, name: str, connection_id: str) -> None:
        self._check_name(name)
        self._write(connection_id, only_if=None, wait=True)

    def unregister(self, name: str, connection_id: str) -> bool:
        if name != DEFAULT_NAME:
            return False
        # No wait: the client asking is answered now; a later register retries on conflict.
        return self._write("", only_if=connection_id, wait=False)


def make_registry(settings: Settings, session: boto3.session.Session | None = None) -> Registry:
    """The back end ``settings.registry_backend`` names, with its AWS client."""
    if settings.registry_backend == "memory":
        return MemoryRegistry(settings.registry_ttl_seconds)
    if settings.registry_backend == "dynamodb":
        assert settings.registry_table is not None  # Settings checked it
        dynamodb = (session or boto3.session.Session()).client("dynamodb", config=AWS_CLIENT_CONFIG)
        return DynamoDBRegistry(dynamodb, settings.registry_table, settings.registry_ttl_seconds)
    assert settings.function_name is not None  # Settings checked it
    lambda_client = (session or boto3.session.Session()).client("lambda", config=AWS_CLIENT_CONFIG)
    return LambdaEnvRegistry(lambda_client, settings.function_name)
