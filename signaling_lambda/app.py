"""The signaling handler: one API Gateway WebSocket event in, replies and relays out.

``SignalingApp.handle`` is what ``lambda_handler`` calls on AWS and what the local gateway
calls for each event. It never raises: bad input becomes an error object for the sender and
one WARNING line; a failing registry or management API becomes one ERROR line saying what to
fix and API Gateway's "Internal server error" for the sender. Its log lines are the ones the
troubleshooting guide tells people to look for.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from p2p_protocol.messages import (
    ECHO_TARGET,
    IDENTIFY,
    INTERNAL_ERROR_MESSAGE,
    BadMessage,
    ErrorCode,
    backend_unreachable,
    describe_data,
    encode,
    error_reply,
    identify_reply,
    internal_error_reply,
    parse_body,
    parse_register,
    parse_send_signal,
    pong_reply,
    registered_reply,
    relay_envelope,
    unknown_action,
)
from p2p_protocol.names import id_label, is_valid_name
from p2p_protocol.tokens import (
    TokenClaims,
    TokenError,
    is_reply_ticket,
    reply_ticket,
    verify_token,
)
from signaling_lambda import authorizer
from signaling_lambda.events import Invocation, MalformedEvent
from signaling_lambda.management import (
    AWS_MANAGEMENT_CONFIG,
    ConnectionsDirectory,
    ManagementApiError,
    boto3_client_factory,
)
from signaling_lambda.registry import RefusedName, Registry, RegistryError, make_registry
from signaling_lambda.settings import Settings

log = logging.getLogger("signaling_lambda")

Response = dict[str, Any]
OK: Response = {"statusCode": 200}
INTERNAL_ERROR: Response = {"statusCode": 500, "body": INTERNAL_ERROR_MESSAGE}
"""API Gateway's response for a function that failed."""


class SignalingApp:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        connections: ConnectionsDirectory,
        clock: Callable[[], float] = time.time,
        revoked: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        self._settings = settings
        self._revoked = revoked or (lambda: settings.revoked)
        """The credential ids whose tokens are refused now (the gateway reads a file)."""
        self._registry = registry
        self._connections = connections
        self._clock = clock
        self._routes: dict[str, Callable[[Invocation, dict[str, Any]], None]] = {
            "sendSignal": self._send_signal,
            "register": self._register,
            "ping": self._ping,
        }

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: boto3.session.Session | None = None,
        management_config: Config = AWS_MANAGEMENT_CONFIG,
        revoked: Callable[[], frozenset[str]] | None = None,
    ) -> "SignalingApp":
        """The app with real AWS clients (from ``session``, else boto3's default).

        ``management_config`` configures the management API client (timeouts, retries);
        ``revoked`` gives the revoked credential ids when they are not the settings' own.
        """
        directory = ConnectionsDirectory(
            boto3_client_factory(session, management_config), settings.management_endpoint
        )
        registry = make_registry(settings, session)
        return cls(settings, registry, directory, revoked=revoked)

    def handle(self, event: object, context: object = None) -> Response:
        log.info("===== Lambda Handler Started =====")
        if authorizer.is_authorizer_request(event):
            assert isinstance(event, dict)
            return self._authorize(event)
        try:
            invocation = Invocation.from_event(event)
        except MalformedEvent as exc:
            log.warning("Ignored an invocation that is not an API Gateway WebSocket event: %s", exc)
            return {"statusCode": 400, "body": "Bad Request"}
        log.debug("RouteKey: %s", invocation.route_key)
        try:
            return self._dispatch(invocation)
        except (RegistryError, ManagementApiError) as exc:
            log.error("%s", exc)
        except Exception:
            log.exception(
                "Unexpected error in route %s (a bug in signaling_lambda)", invocation.route_key
            )
        self._send_internal_error(invocation)
        return INTERNAL_ERROR

    def _dispatch(self, invocation: Invocation) -> Response:
        if invocation.route_key == "$connect":
            return self._connect(invocation)
        if invocation.route_key == "$disconnect":
            # Registrations stay: a stale one is found and dropped on the next relay to it.
            log.info("Connection %s disconnected", invocation.connection_id)
            return OK
        try:
            message = parse_body(invocation.body, invocation.is_base64)
            route = self._routes.get(invocation.route_key)
            if route is None:
                raise unknown_action(message)
            route(invocation, message)
        except BadMessage as exc:
            log.warning("Refused a message from %s: %s", invocation.connection_id, exc.message)
            self._reply(invocation, error_reply(exc.code, exc.message))
        return OK

    def _authorize(self, event: dict[str, Any]) -> Response:
        """The ``$connect`` authorizer: Allow with the token's claims, or Deny (HTTP 401)."""
        method_arn = str(event["methodArn"])
        if not self._settings.auth_enabled:
            return authorizer.allow(None, method_arn)
        assert self._settings.secret is not None  # Settings checked it
        try:
            claims = verify_token(
                self._settings.secret, authorizer.token_of(event), now=self._clock()
            )
        except TokenError as exc:
            log.warning("Connection refused, returning 401: %s", exc)
            return authorizer.deny(method_arn)
        if claims.credential_id in self._revoked():
            log.warning(
                "Connection refused, returning 401: the credential %s of %s was revoked",
                claims.credential_id,
                claims.describe(),
            )
            return authorizer.deny(method_arn)
        log.debug("Authorized a connection holding a token of %s", claims.describe())
        return authorizer.allow(claims, method_arn)

    def _connect(self, invocation: Invocation) -> Response:
        if self._settings.auth_enabled:
            claims = authorizer.claims_from_context(invocation.authorizer)
            if claims is None:
                log.warning(
                    "Connection refused, returning 401: the connection has no authorizer "
                    "context (the $connect route needs the token authorizer; update the API "
                    "with ansible-playbook site.yml)"
                )
                return {"statusCode": 401, "body": "Unauthorized"}
            log.debug(
                "Connection %s holds a token of %s", invocation.connection_id, claims.describe()
            )
        log.info("Connection allowed, returning 200")
        return OK

    def _claims(self, invocation: Invocation) -> TokenClaims | None:
        """Who sent this message (None when authentication is off); BadMessage if unknown or
        expired since it connected."""
        if not self._settings.auth_enabled:
            return None
        claims = authorizer.claims_from_context(invocation.authorizer)
        if claims is None:
            raise BadMessage(
                ErrorCode.UNAUTHORIZED,
                "this connection has no claims (the $connect route needs the token authorizer)",
            )
        if claims.expires_at <= self._clock():
            raise BadMessage(
                ErrorCode.UNAUTHORIZED,
                "the token of this connection has expired; reconnect with a new one",
            )
        if claims.credential_id and claims.credential_id in self._revoked():
            raise BadMessage(
                ErrorCode.UNAUTHORIZED,
                f"the credential {claims.credential_id} of this connection was revoked",
            )
        return claims

    def _ping(self, invocation: Invocation, message: dict[str, Any]) -> None:
        self._reply(invocation, pong_reply(invocation.connection_id))

    def _register(self, invocation: Invocation, message: dict[str, Any]) -> None:
        request = parse_register(message)
        connection = self._claims(invocation)
        if connection is not None and (
            connection.role != "homelab" or connection.name != request.name
        ):
            raise BadMessage(
                ErrorCode.UNAUTHORIZED,
                f"register refused: this connection was opened with the token of "
                f"{connection.describe()}, not of homelab {request.name!r}",
            )
        if self._settings.auth_enabled:
            assert self._settings.secret is not None
            try:
                claims = verify_token(self._settings.secret, request.token, now=self._clock())
            except TokenError as exc:
                raise BadMessage(ErrorCode.UNAUTHORIZED, f"register refused: {exc}") from None
            if claims.role != "homelab":
                raise BadMessage(
                    ErrorCode.UNAUTHORIZED,
                    f"register refused: a {claims.role} token cannot register; use a homelab token",
                )
            if claims.name != request.name:
                raise BadMessage(
                    ErrorCode.UNAUTHORIZED,
                    f"register refused: the token is for {claims.name!r}, not {request.name!r}",
                )
        try:
            self._registry.register(request.name, invocation.connection_id)
        except RefusedName as exc:
            raise BadMessage(ErrorCode.BAD_REQUEST, f"register refused: {exc}") from None
        log.info(
            "Registered %r: %s is now %s",
            request.name,
            id_label(request.name),
            invocation.connection_id,
        )
        self._reply(invocation, registered_reply(request.name, invocation.connection_id))

    def _send_signal(self, invocation: Invocation, message: dict[str, Any]) -> None:
        log.info("Processing sendSignal route")
        signal = parse_send_signal(message)
        sender = invocation.connection_id
        claims = self._claims(invocation)
        if signal.to != ECHO_TARGET and claims is not None:
            self._check_target(claims, signal.to, signal.ticket)
        if signal.to == ECHO_TARGET:
            echo = (
                identify_reply(sender)
                if signal.data == IDENTIFY
                else relay_envelope(sender, ECHO_TARGET, signal.data)
            )
            self._reply(invocation, echo)
            return
        target, name = self._resolve(signal.to)
        connections = self._connections.get(invocation.domain_name, invocation.stage)
        ticket = None
        if name is not None and self._settings.secret is not None:
            ticket = reply_ticket(self._settings.secret, name, sender)
        envelope = encode(relay_envelope(sender, signal.to, signal.data, ticket))
        if name is not None:
            # One call per relay: the post is the liveness check (GoneException: stale).
            log.info("Verifying %s connection is alive...", id_label(name))
        if connections.post(target, envelope):
            if name is not None:
                log.info("%s connection verified as alive", id_label(name))
            shown = target if name is None else f"{name} ({target})"
            log.info("Relayed %s from %s to %s", describe_data(signal.data), sender, shown)
            return
        if name is not None:
            log.warning("%s connection is stale (homelab_server not connected)", id_label(name))
            if self._registry.unregister(name, target):
                log.info("Dropped the stale registration of %r (%s)", name, target)
        log.error("Target connection %s does not exist (homelab_server not connected)", target)
        self._reply(invocation, backend_unreachable(signal.to))
        log.info("Sent error notification to sender")

    def _check_target(self, claims: TokenClaims, to: str, ticket: str | None) -> None:
        """A client reaches the homelabs its token names; a homelab answers the clients that
        contacted it (the ticket signaling gave it with their signals); nothing else."""
        if claims.role == "client":
            if to not in claims.homelabs:
                raise BadMessage(
                    ErrorCode.UNAUTHORIZED,
                    f"the token of {claims.describe()} does not name {to[:64]!r}: a client "
                    f"reaches only its homelabs ({', '.join(claims.homelabs)})",
                )
            return
        assert self._settings.secret is not None
        if not is_reply_ticket(self._settings.secret, claims.name, to, ticket):
            raise BadMessage(
                ErrorCode.UNAUTHORIZED,
                f"homelab {claims.name!r} may only answer clients that contacted it: no valid "
                f"ticket for {to[:64]!r}",
            )

    def _resolve(self, to: str) -> tuple[str, str | None]:
        """(connection id, registered name or None) for a ``to`` that is not ``me``."""
        if is_valid_name(to):
            connection_id = self._registry.lookup(to)
            if connection_id:
                log.debug("%s %s is set: %s", id_label(to), self._registry.source, connection_id)
                return connection_id, to
            log.debug(
                "%s %s is not set; trying %r as a connection id",
                id_label(to),
                self._registry.source,
                to,
            )
        return to, None

    def _reply(self, invocation: Invocation, message: dict[str, Any]) -> None:
        connections = self._connections.get(invocation.domain_name, invocation.stage)
        if not connections.post(invocation.connection_id, encode(message)):
            log.debug("Connection %s left before its reply was sent", invocation.connection_id)

    def _send_internal_error(self, invocation: Invocation) -> None:
        """Tell the sender what API Gateway tells it when a function fails."""
        if invocation.route_key in ("$connect", "$disconnect"):
            return
        reply = internal_error_reply(invocation.connection_id, invocation.request_id)
        try:
            self._reply(invocation, reply)
        except ManagementApiError as exc:
            log.debug("Could not tell %s about the error: %s", invocation.connection_id, exc)
