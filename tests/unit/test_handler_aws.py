"""The handler on moto's in-process AWS: DynamoDB, API Gateway management, Lambda."""

import io
import json
import logging
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from lab import SECRET, credential, token
from p2p_protocol.tokens import reply_ticket
from signaling_lambda import authorizer
from signaling_lambda import handler as lambda_entry
from signaling_lambda.app import SignalingApp
from signaling_lambda.management import ConnectionsDirectory, boto3_client_factory
from signaling_lambda.registry import DynamoDBRegistry, LambdaEnvRegistry
from signaling_lambda.settings import ConfigError, Settings
from tests.support.aws import create_registry_table
from tests.unit.aws_support import DOMAIN, ENDPOINT, REGION, authorizer_event, event, posted

TABLE = "homelab-p2p-registry"
FUNCTION = "homelab-p2p-signaling"
GUIDE_MESSAGE = "The target (homelab_server) is not currently connected"
OFFER = {"type": "offer", "sdp": "v=0"}


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    for variable, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(variable, value)
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


@pytest.fixture
def table(session: boto3.session.Session) -> str:
    create_registry_table(session.client("dynamodb"), TABLE)
    return TABLE


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="signaling_lambda")
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"[{r.levelname}] {r.getMessage()}" for r in caplog.records if r.name == "signaling_lambda"
    ]


def assert_in_order(caplog: pytest.LogCaptureFixture, *expected: str) -> None:
    logged = lines(caplog)
    position = 0
    for line in expected:
        matches = [i for i, text in enumerate(logged) if i >= position and text.startswith(line)]
        assert matches, f"{line!r} not logged after line {position}:\n" + "\n".join(logged)
        position = matches[0] + 1


def dynamodb_app(session: boto3.session.Session, table: str) -> SignalingApp:
    settings = Settings(registry_backend="dynamodb", registry_table=table, secret=SECRET)
    return SignalingApp.from_settings(settings, session)


def register(app: SignalingApp, connection_id: str, name: str = "laptop") -> dict[str, Any]:
    body = {"action": "register", "name": name, "token": token("homelab", name)}
    return app.handle(event("register", connection_id, body, token=token("homelab", name)))


# --- $connect -----------------------------------------------------------------------------


def test_connect_with_a_valid_token_is_allowed(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    app = dynamodb_app(session, table)
    assert app.handle(event("$connect", "C1=", query={"token": token()})) == {"statusCode": 200}
    assert_in_order(
        logs,
        "[INFO] ===== Lambda Handler Started =====",
        "[DEBUG] RouteKey: $connect",
        "[INFO] Connection allowed, returning 200",
    )


def test_connect_without_a_valid_token_is_refused(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    app = dynamodb_app(session, table)
    decision = app.handle(authorizer_event("C1=", "forged"))
    assert authorizer.allowed_context(decision) is None  # API Gateway answers 401
    assert_in_order(logs, "[WARNING] Connection refused, returning 401: the token is not")
    # Without the authorizer's context (a $connect route without it), nobody gets in.
    response = app.handle(event("$connect", "C2="))
    assert response["statusCode"] == 401
    assert_in_order(logs, "[WARNING] Connection refused, returning 401: the connection has no")


# --- what each connection may do --------------------------------------------------------------


def send(app: SignalingApp, sender: str, opened_with: str, **message: Any) -> None:
    app.handle(event("sendSignal", sender, {"action": "sendSignal", **message}, token=opened_with))


def test_a_client_reaches_only_the_homelabs_its_token_names(
    session: boto3.session.Session, table: str
) -> None:
    app = dynamodb_app(session, table)
    register(app, "HOME=")
    register(app, "NAS=", "nas")
    send(app, "CLIENT=", token("client", "alice", homelabs=("nas",)), to="laptop", data=OFFER)
    assert posted("CLIENT=")[-1] == {
        "error": "unauthorized",
        "message": "the token of client 'alice' does not name 'laptop': a client reaches only "
        "its homelabs (nas)",
    }
    assert posted("HOME=")[-1]["action"] == "registered"  # nothing relayed
    send(app, "CLIENT=", token("client", "alice"), to="NAS=", data=OFFER)  # a raw id
    assert posted("CLIENT=")[-1]["error"] == "unauthorized"
    assert posted("NAS=")[-1]["action"] == "registered"


def test_a_homelab_answers_only_the_clients_that_contacted_it(
    session: boto3.session.Session, table: str
) -> None:
    app = dynamodb_app(session, table)
    register(app, "HOME=")
    homelab = token("homelab", "laptop")
    send(app, "CLIENT=", token(), to="laptop", data=OFFER)
    ticket = posted("HOME=")[-1]["ticket"]
    answer = {"type": "answer", "sdp": "v=0"}
    send(app, "HOME=", homelab, to="CLIENT=", data=answer, ticket=ticket)
    assert posted("CLIENT=")[-1] == {
        "action": "sendSignal",
        "from": "HOME=",
        "to": "CLIENT=",
        "data": answer,
    }
    for to, ticket_sent in (("OTHER=", ticket), ("OTHER=", None), ("laptop", None)):
        send(app, "HOME=", homelab, to=to, data=answer, ticket=ticket_sent)
        refusal = posted("HOME=")[-1]
        assert refusal["error"] == "unauthorized", refusal
        assert "may only answer clients that contacted it" in refusal["message"]
    # Another homelab cannot use laptop's ticket, nor act as a client.
    send(app, "NAS=", token("homelab", "nas"), to="CLIENT=", data=answer, ticket=ticket)
    assert posted("NAS=")[-1]["error"] == "unauthorized"


def test_only_a_homelab_connection_registers_its_own_name(
    session: boto3.session.Session, table: str
) -> None:
    app = dynamodb_app(session, table)
    body = {"action": "register", "name": "laptop", "token": token("homelab", "laptop")}
    app.handle(event("register", "C=", body, token=token("client", "laptop")))
    refusal = posted("C=")[-1]
    assert refusal["error"] == "unauthorized"
    assert "opened with the token of client 'laptop', not of homelab 'laptop'" in refusal["message"]


def test_an_expired_connection_token_ends_what_it_may_send(
    session: boto3.session.Session, table: str
) -> None:
    app = dynamodb_app(session, table)
    opened = event(
        "sendSignal", "C=", {"action": "sendSignal", "to": "me", "data": 1}, token=token()
    )
    opened["requestContext"]["authorizer"]["expiresAt"] = int(time.time()) - 1
    app.handle(opened)
    assert "has expired; reconnect with a new one" in posted("C=")[-1]["message"]


def test_lambda_handler_answers_a_bad_token_with_401(
    monkeypatch: pytest.MonkeyPatch, fresh_entry: None
) -> None:
    """API Gateway answers 401 when the authorizer raises 'Unauthorized' (a Deny is 403)."""
    monkeypatch.setenv("REGISTRY_BACKEND", "memory")
    monkeypatch.setenv("SIGNALING_SECRET", SECRET.decode())
    with pytest.raises(lambda_entry.Unauthorized, match=r"^Unauthorized$"):
        lambda_entry.lambda_handler(authorizer_event("C=", "forged"), None)
    allowed = lambda_entry.lambda_handler(authorizer_event("C=", token()), None)
    assert allowed["context"] == {
        "role": "client", "name": "alice", "homelabs": "laptop",
        "expiresAt": allowed["context"]["expiresAt"], "credentialId": "",
    }  # fmt: skip


# --- dynamodb -------------------------------------------------------------------------------


def test_register_writes_the_item_with_its_ttl(session: boto3.session.Session, table: str) -> None:
    app = dynamodb_app(session, table)
    before = int(time.time())
    assert register(app, "HOME=") == {"statusCode": 200}
    item = session.client("dynamodb").get_item(TableName=table, Key={"name": {"S": "laptop"}})[
        "Item"
    ]
    assert item["connectionId"] == {"S": "HOME="}
    expires_at = int(item["expiresAt"]["N"])
    assert before + 7800 <= expires_at <= int(time.time()) + 7800
    assert posted("HOME=") == [{"action": "registered", "name": "laptop", "connectionId": "HOME="}]


def test_relay_to_a_registered_name(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    app = dynamodb_app(session, table)
    register(app, "HOME=")
    app.handle(
        event(
            "sendSignal",
            "CLIENT=",
            {"action": "sendSignal", "to": "laptop", "data": OFFER},
            token=token(),
        )
    )
    assert posted("HOME=")[-1] == {
        "action": "sendSignal",
        "from": "CLIENT=",
        "to": "laptop",
        "data": OFFER,
        "ticket": reply_ticket(SECRET, "laptop", "CLIENT="),
    }
    assert_in_order(
        logs,
        "[INFO] Processing sendSignal route",
        "[DEBUG] LAPTOP_ID registry item is set: HOME=",
        "[INFO] Verifying LAPTOP_ID connection is alive...",
        "[INFO] LAPTOP_ID connection verified as alive",
        "[INFO] Relayed offer from CLIENT= to laptop (HOME=)",
    )


def test_expired_registration_is_not_used(session: boto3.session.Session, table: str) -> None:
    session.client("dynamodb").put_item(
        TableName=table,
        Item={"name": {"S": "laptop"}, "connectionId": {"S": "OLD="}, "expiresAt": {"N": "1000"}},
    )
    registry = DynamoDBRegistry(session.client("dynamodb"), table, 7800)
    assert registry.lookup("laptop") is None


def test_stale_cleanup_never_removes_a_newer_registration(
    session: boto3.session.Session, table: str
) -> None:
    registry = DynamoDBRegistry(session.client("dynamodb"), table, 7800)
    registry.register("laptop", "OLD=")
    registry.register("laptop", "NEW=")
    assert registry.unregister("laptop", "OLD=") is False
    assert registry.lookup("laptop") == "NEW="
    assert registry.unregister("laptop", "NEW=") is True
    assert registry.lookup("laptop") is None


def stubbed_app(session: boto3.session.Session, table: str) -> tuple[SignalingApp, Stubber]:
    """An app whose management API client answers what the test queues."""
    client = session.client("apigatewaymanagementapi", endpoint_url=ENDPOINT)
    stubber = Stubber(client)
    stubber.activate()
    directory = ConnectionsDirectory(lambda _endpoint: client)
    settings = Settings(registry_backend="dynamodb", registry_table=table, secret=SECRET)
    registry = DynamoDBRegistry(session.client("dynamodb"), table, 7800)
    return SignalingApp(settings, registry, directory), stubber


def test_stale_registration_found_by_the_post_is_dropped_and_the_sender_told(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    app, stubber = stubbed_app(session, table)
    DynamoDBRegistry(session.client("dynamodb"), table, 7800).register("laptop", "GONE=")
    stubber.add_client_error(
        "post_to_connection",
        "GoneException",
        http_status_code=410,
        expected_params={"ConnectionId": "GONE=", "Data": ANY},
    )
    error = {"error": "backend_unreachable", "message": GUIDE_MESSAGE, "target": "laptop"}
    stubber.add_response(
        "post_to_connection",
        {},
        {"ConnectionId": "CLIENT=", "Data": json.dumps(error, separators=(",", ":")).encode()},
    )
    body = {"action": "sendSignal", "to": "laptop", "data": OFFER}
    assert app.handle(event("sendSignal", "CLIENT=", body, token=token())) == {"statusCode": 200}
    stubber.assert_no_pending_responses()
    assert DynamoDBRegistry(session.client("dynamodb"), table, 7800).lookup("laptop") is None
    assert_in_order(
        logs,
        "[INFO] Verifying LAPTOP_ID connection is alive...",
        "[WARNING] LAPTOP_ID connection is stale (homelab_server not connected)",
        "[INFO] Dropped the stale registration of 'laptop' (GONE=)",
        "[ERROR] Target connection GONE= does not exist (homelab_server not connected)",
        "[INFO] Sent error notification to sender",
    )


def test_a_relay_to_a_live_homelab_is_one_management_call(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    app, stubber = stubbed_app(session, table)
    DynamoDBRegistry(session.client("dynamodb"), table, 7800).register("laptop", "HOME=")
    # The Stubber refuses any call not queued: a GetConnection first would fail the relay.
    stubber.add_response("post_to_connection", {}, {"ConnectionId": "HOME=", "Data": ANY})
    app.handle(
        event(
            "sendSignal",
            "CLIENT=",
            {"action": "sendSignal", "to": "laptop", "data": OFFER},
            token=token(),
        )
    )
    stubber.assert_no_pending_responses()
    assert_in_order(
        logs,
        "[INFO] Verifying LAPTOP_ID connection is alive...",
        "[INFO] LAPTOP_ID connection verified as alive",
        "[INFO] Relayed offer from CLIENT= to laptop (HOME=)",
    )
    assert not any(record.levelno >= logging.WARNING for record in logs.records)


class ReRegisteredMeanwhile(DynamoDBRegistry):
    """The homelab re-registers right after a client's relay has looked up its old id."""

    def lookup(self, name: str) -> str | None:
        found = super().lookup(name)
        self.register(name, "NEW=")
        return found


def test_a_cleanup_racing_a_new_registration_keeps_the_new_one(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    client = session.client("apigatewaymanagementapi", endpoint_url=ENDPOINT)
    stubber = Stubber(client)
    stubber.add_client_error(
        "post_to_connection",
        "GoneException",
        http_status_code=410,
        expected_params={"ConnectionId": "OLD=", "Data": ANY},
    )
    stubber.add_response("post_to_connection", {}, {"ConnectionId": "CLIENT=", "Data": ANY})
    stubber.activate()
    registry = ReRegisteredMeanwhile(session.client("dynamodb"), table, 7800)
    registry.register("laptop", "OLD=")
    settings = Settings(registry_backend="dynamodb", registry_table=table, secret=SECRET)
    app = SignalingApp(settings, registry, ConnectionsDirectory(lambda _: client))
    app.handle(
        event(
            "sendSignal",
            "CLIENT=",
            {"action": "sendSignal", "to": "laptop", "data": OFFER},
            token=token(),
        )
    )
    assert DynamoDBRegistry(session.client("dynamodb"), table, 7800).lookup("laptop") == "NEW="
    assert not any("Dropped the stale registration" in line for line in lines(logs))


def test_a_missing_table_is_one_error_line_and_internal_server_error(
    session: boto3.session.Session, logs: pytest.LogCaptureFixture
) -> None:
    app = dynamodb_app(session, "no-such-table")
    body = {"action": "sendSignal", "to": "laptop", "data": OFFER}
    response = app.handle(event("sendSignal", "CLIENT=", body, token=token()))
    assert response["statusCode"] == 500
    reply = posted("CLIENT=")[-1]
    assert reply["message"] == "Internal server error"
    assert reply["connectionId"] == "CLIENT="
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is None
    assert "ResourceNotFoundException" in errors[0].getMessage()
    assert "check that table no-such-table exists" in errors[0].getMessage()


def test_management_api_forbidden_says_which_permission(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    app, stubber = stubbed_app(session, table)
    stubber.add_client_error("post_to_connection", "ForbiddenException", http_status_code=403)
    stubber.add_client_error("post_to_connection", "ForbiddenException", http_status_code=403)
    assert app.handle(event("ping", "C=", {"action": "ping"}, token=token()))["statusCode"] == 500
    assert_in_order(logs, "[ERROR] PostToConnection at https://")
    assert "execute-api:ManageConnections" in lines(logs)[-1] or any(
        "execute-api:ManageConnections" in line for line in lines(logs)
    )


# --- the management endpoint ------------------------------------------------------------------


def test_endpoint_comes_from_the_event_or_the_override() -> None:
    assert ConnectionsDirectory(boto3_client_factory()).endpoint_for(DOMAIN, "prod") == ENDPOINT
    override = ConnectionsDirectory(boto3_client_factory(), "http://127.0.0.1:9/prod/")
    assert override.endpoint_for(DOMAIN, "prod") == "http://127.0.0.1:9/prod"


# --- lambda_env: the original design ------------------------------------------------------------


def create_function(session: boto3.session.Session, laptop_id: str) -> None:
    role = session.client("iam").create_role(
        RoleName="signaling",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(e, c): return {}\n")
    session.client("lambda").create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=role,
        Handler="handler.lambda_handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": {"LAPTOP_ID": laptop_id, "SIGNALING_SECRET": SECRET.decode()}},
    )


def function_variables(session: boto3.session.Session) -> dict[str, str]:
    config = session.client("lambda").get_function_configuration(FunctionName=FUNCTION)
    return config["Environment"]["Variables"]


def lambda_env_app(session: boto3.session.Session) -> SignalingApp:
    settings = Settings(registry_backend="lambda_env", function_name=FUNCTION, secret=SECRET)
    return SignalingApp.from_settings(settings, session)


def test_lambda_env_register_sets_laptop_id_and_keeps_the_rest(
    session: boto3.session.Session, logs: pytest.LogCaptureFixture
) -> None:
    create_function(session, "init")
    app = lambda_env_app(session)
    register(app, "HOME=")
    assert function_variables(session) == {
        "LAPTOP_ID": "HOME=",
        "SIGNALING_SECRET": SECRET.decode(),
    }
    app.handle(
        event(
            "sendSignal",
            "CLIENT=",
            {"action": "sendSignal", "to": "laptop", "data": OFFER},
            token=token(),
        )
    )
    assert posted("HOME=")[-1]["data"] == OFFER
    assert_in_order(logs, "[DEBUG] LAPTOP_ID environment variable is set: HOME=")


def test_lambda_env_stale_init_value_is_the_guides_test_3(
    session: boto3.session.Session, logs: pytest.LogCaptureFixture
) -> None:
    create_function(session, "init")
    client = session.client("apigatewaymanagementapi", endpoint_url=ENDPOINT)
    stubber = Stubber(client)
    stubber.add_client_error("post_to_connection", "GoneException", http_status_code=410)
    stubber.add_response("post_to_connection", {}, {"ConnectionId": "CLIENT=", "Data": ANY})
    stubber.activate()
    settings = Settings(registry_backend="lambda_env", function_name=FUNCTION, secret=SECRET)
    registry = LambdaEnvRegistry(session.client("lambda"), FUNCTION)
    app = SignalingApp(settings, registry, ConnectionsDirectory(lambda _: client))
    app.handle(
        event(
            "sendSignal",
            "CLIENT=",
            {"action": "sendSignal", "to": "laptop", "data": OFFER},
            token=token(),
        )
    )
    stubber.assert_no_pending_responses()
    assert function_variables(session)["LAPTOP_ID"] == ""
    assert_in_order(
        logs,
        "[INFO] Processing sendSignal route",
        "[DEBUG] LAPTOP_ID environment variable is set: init",
        "[INFO] Verifying LAPTOP_ID connection is alive...",
        "[WARNING] LAPTOP_ID connection is stale (homelab_server not connected)",
        "[ERROR] Target connection init does not exist (homelab_server not connected)",
        "[INFO] Sent error notification to sender",
    )


def test_lambda_env_holds_only_laptop(session: boto3.session.Session) -> None:
    create_function(session, "")
    app = lambda_env_app(session)
    register(app, "NAS=", name="nas")
    reply = posted("NAS=")[-1]
    assert reply["error"] == "bad_request"
    assert "holds only the name 'laptop'" in reply["message"]


def test_lambda_env_write_retries_when_the_revision_changed() -> None:
    client = boto3.session.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION
    ).client("lambda")
    stubber = Stubber(client)

    def configuration(revision: str, laptop_id: str) -> dict[str, Any]:
        return {
            "FunctionName": FUNCTION,
            "RevisionId": revision,
            "Environment": {"Variables": {"LAPTOP_ID": laptop_id, "OTHER": "kept"}},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "LastModified": datetime.now(UTC).isoformat(),
        }

    expected_update = {
        "FunctionName": FUNCTION,
        "Environment": {"Variables": {"LAPTOP_ID": "HOME=", "OTHER": "kept"}},
        "RevisionId": ANY,
    }
    stubber.add_response("get_function_configuration", configuration("r1", "init"))
    stubber.add_client_error(
        "update_function_configuration", "PreconditionFailedException", http_status_code=412
    )
    stubber.add_response("get_function_configuration", configuration("r2", "init"))
    stubber.add_response(
        "update_function_configuration", configuration("r3", "HOME="), expected_update
    )
    # The waiter polls GetFunctionConfiguration, which the function's policy allows.
    stubber.add_response("get_function_configuration", configuration("r3", "HOME="))
    with stubber:
        LambdaEnvRegistry(client, FUNCTION, sleep=lambda _: None).register("laptop", "HOME=")
        stubber.assert_no_pending_responses()


# --- lambda_handler: the entry point as deployed ---------------------------------------------


@pytest.fixture
def fresh_entry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(lambda_entry, "_app", None)
    yield
    lambda_entry._app = None


def test_lambda_handler_builds_the_app_from_its_environment(
    session: boto3.session.Session, table: str, monkeypatch: pytest.MonkeyPatch, fresh_entry: None
) -> None:
    monkeypatch.setenv("REGISTRY_BACKEND", "dynamodb")
    monkeypatch.setenv("REGISTRY_TABLE", table)
    monkeypatch.setenv("SIGNALING_SECRET", SECRET.decode())
    connect = event("$connect", "C=", query={"token": token()})
    assert lambda_entry.lambda_handler(connect, None)["statusCode"] == 200
    echo = {"action": "sendSignal", "to": "me", "data": "test"}
    lambda_entry.lambda_handler(event("sendSignal", "C=", echo, token=token()), None)
    assert posted("C=") == [{"action": "sendSignal", "from": "C=", "to": "me", "data": "test"}]


def test_lambda_handler_reports_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, fresh_entry: None, logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REGISTRY_BACKEND", "sqlite")
    response = lambda_entry.lambda_handler(event("$connect", "C="), None)
    assert response["statusCode"] == 500
    assert_in_order(logs, "[ERROR] Configuration error: REGISTRY_BACKEND is 'sqlite'; use one of")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"REGISTRY_BACKEND": "dynamodb"}, "REGISTRY_TABLE is not set"),
        ({"REGISTRY_BACKEND": "memory"}, "SIGNALING_SECRET is not set"),
        ({"REGISTRY_BACKEND": "memory", "SIGNALING_SECRET": "short"}, "at least 32"),
        (
            {"REGISTRY_BACKEND": "lambda_env", "SIGNALING_AUTH": "off"},
            "AWS_LAMBDA_FUNCTION_NAME is not set",
        ),
        ({"REGISTRY_BACKEND": "memory", "SIGNALING_AUTH": "maybe"}, "SIGNALING_AUTH is 'maybe'"),
        (
            {"REGISTRY_BACKEND": "memory", "SIGNALING_AUTH": "off", "REGISTRY_TTL_SECONDS": "x"},
            "not a whole number",
        ),
        (
            {"REGISTRY_BACKEND": "memory", "SIGNALING_AUTH": "off", "LOG_LEVEL": "LOUD"},
            "LOG_LEVEL is 'LOUD'",
        ),
    ],
)
def test_settings_name_the_variable_to_fix(variables: dict[str, str], message: str) -> None:

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_environ(variables)


def test_a_revoked_credential_ends_its_token_at_signaling(
    session: boto3.session.Session, table: str, logs: pytest.LogCaptureFixture
) -> None:
    lost, kept = credential("client", "lost"), credential("client", "kept")
    settings = Settings(
        registry_backend="memory",
        secret=SECRET,
        management_endpoint=ENDPOINT,
        revoked=frozenset({lost.certificate.id}),
    )
    app = SignalingApp.from_settings(settings, session)
    refused = app.handle(authorizer_event("C=", lost.signaling_token))
    assert authorizer.allowed_context(refused) is None
    assert authorizer.allowed_context(app.handle(authorizer_event("C=", kept.signaling_token)))
    assert_in_order(
        logs,
        f"[WARNING] Connection refused, returning 401: the credential {lost.certificate.id} "
        "of client 'lost' was revoked",
    )
    app.handle(event("ping", "C=", {"action": "ping"}, token=lost.signaling_token))
    send(app, "C=", lost.signaling_token, to="me", data="x")
    assert "of this connection was revoked" in posted("C=")[-1]["message"]


def test_the_revocation_list_comes_from_the_environment() -> None:
    ids = "0123456789abcdef, fedcba9876543210"
    base = {"SIGNALING_SECRET": "s" * 40, "REGISTRY_BACKEND": "memory"}
    settings = Settings.from_environ({**base, "SIGNALING_REVOKED": ids})
    assert settings.revoked == {"0123456789abcdef", "fedcba9876543210"}
    with pytest.raises(ConfigError, match="SIGNALING_REVOKED holds 'nope', not a credential id"):
        Settings.from_environ({**base, "SIGNALING_REVOKED": "nope"})


BUILT_AT_IMPORT = """
from signaling_lambda import handler
print(handler._app is not None)
"""


@pytest.mark.parametrize(("on_lambda", "built"), [(True, "True"), (False, "False")])
def test_on_lambda_the_app_is_built_at_import_in_the_init_phase(
    on_lambda: bool, built: str
) -> None:
    environment = {
        "REGISTRY_BACKEND": "memory",
        "SIGNALING_AUTH": "off",
        "AWS_DEFAULT_REGION": REGION,
        **({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"} if on_lambda else {}),
    }
    result = subprocess.run(
        [sys.executable, "-c", BUILT_AT_IMPORT],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == built, result.stderr
