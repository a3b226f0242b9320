"""``signaling-gateway``: the local API-Gateway-compatible signaling server."""

import argparse
import asyncio
import contextlib
import logging
import re
import resource
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from prometheus_client import REGISTRY

from p2p_protocol.identity import IdentityError
from p2p_protocol.messages import LINK_SEND_RATE
from p2p_protocol.names import LOG_LEVELS
from p2p_protocol.tokens import SecretError
from p2p_runtime.addresses import split_host_port
from p2p_runtime.credentials import load_secret_file
from p2p_runtime.logs import configure_logging
from p2p_runtime.metrics_http import MetricsEndpoint
from p2p_runtime.revocation import RevocationList
from p2p_runtime.sdnotify import notify
from p2p_runtime.stop import stop_on_signal
from p2p_runtime.watchdog import keep_watchdog, watchdog_interval
from signaling_gateway.inprocess import IN_PROCESS_ENDPOINT, InProcessManagementApi
from signaling_gateway.metrics import GatewayCollector
from signaling_gateway.pool import (
    HandlerPool,
    Invoker,
    PoolError,
    ThreadInvoker,
    default_worker_count,
)
from signaling_gateway.server import MAX_MESSAGE_BYTES, Gateway, GatewayConfig
from signaling_gateway.sigv4 import new_secret as new_management_secret
from signaling_gateway.worker import Handler, SharedRegistry
from signaling_lambda.app import SignalingApp
from signaling_lambda.management import ConnectionsDirectory
from signaling_lambda.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

log = logging.getLogger("signaling_gateway")
PROG = "signaling-gateway"
MAX_HANDLER_WORKERS = 64
HANDLER_THREADS = 16
"""Threads of the old path (``--handler-workers 0``)."""
# An installed wheel carries frontend/ inside the package; a checkout has it at the top.
FRONTEND_DIRS = (
    Path(__file__).resolve().parent / "frontend",
    Path(__file__).resolve().parents[1] / "frontend",
)
# The management API is on loopback and never waits on a client: a call that takes longer
# than this is a fault, and a retry would only hold the handler thread longer.
MANAGEMENT_CLIENT_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=1,
    read_timeout=2,
    max_pool_connections=32,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the signaling Lambda handler behind a local WebSocket server that "
        "behaves as API Gateway does.",
    )
    _add_listen_options(parser)
    _add_auth_options(parser)
    _add_connection_lifetime_options(parser)
    _add_cap_options(parser)
    _add_output_options(parser)
    return parser


def _host_port(text: str) -> tuple[str, int]:
    address = split_host_port(text, lowest_port=1)
    if address is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return address


def _add_listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="WebSocket port; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--stage", default="prod", help="stage, the URL path (default: %(default)s)"
    )
    parser.add_argument(
        "--metrics-address",
        type=_host_port,
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: not served)",
    )
    parser.add_argument(
        "--management-port",
        type=int,
        default=None,
        help="port of the management API, always on 127.0.0.1 (default: --port + 1)",
    )
    parser.add_argument(
        "--apps-port",
        type=int,
        default=None,
        help="port of the browser proxy's app origin (frontend/apps/, on --host); -1 serves "
        "none (default: --port + 2)",
    )
    parser.add_argument(
        "--management-secret-file",
        type=Path,
        default=None,
        metavar="F",
        help="file holding the secret the management API's callers must sign with (SigV4, "
        "as the secret access key; 32+ bytes, readable by its owner only); default: a random "
        "secret only this process knows",
    )


def _add_auth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--revocation-file",
        type=Path,
        help="revocation list (JSON, as Ansible writes it): tokens issued with a credential it "
        "names are refused; read again when it changes",
    )
    auth = parser.add_mutually_exclusive_group(required=True)
    auth.add_argument(
        "--secret-file", type=Path, help="file holding the token signing secret (32+ bytes)"
    )
    auth.add_argument(
        "--no-auth",
        action="store_true",
        help="accept connections without a token (local tests only)",
    )


def _add_connection_lifetime_options(parser: argparse.ArgumentParser) -> None:
    """How long a connection lives and how fast it may send, as on API Gateway."""
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="close connections that sent nothing for this many seconds (default: %(default)g)",
    )
    parser.add_argument(
        "--max-connection-age",
        type=float,
        default=7200.0,
        help="close connections older than this many seconds (default: %(default)g)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=100.0,
        help="messages per second per connection, bursts of twice that; 0 is no limit "
        "(default: %(default)g)",
    )


def _add_cap_options(parser: argparse.ArgumentParser) -> None:
    """The gateway's own limits on connections, unread bytes and handler time."""
    parser.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="connections open at once, handshakes included; beyond: HTTP 503 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=100,
        metavar="N",
        help="connections from one source address; beyond: HTTP 429 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-connections-per-token",
        type=int,
        default=16,
        metavar="N",
        help="connections with one token (valid or not); beyond: HTTP 429 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-send-buffer",
        type=int,
        default=1048576,
        metavar="BYTES",
        help="bytes a client may leave unread; beyond, its connection is closed with 1008 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--handlers-per-token",
        type=int,
        default=8,
        metavar="N",
        help="messages of one token's connections (one address's, without auth) at the "
        "handler at once, running or queued there; the rest wait their turn, unread, so one "
        "token cannot fill the handler pool (default: %(default)s)",
    )
    parser.add_argument(
        "--handler-queue",
        type=int,
        default=512,
        metavar="N",
        help="messages at the handler at once, all connections together, running or queued "
        "there; beyond, the gateway reads no more messages until one is done "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--handler-workers",
        type=int,
        default=None,
        metavar="N",
        help="processes that run the handler beside the event loop, each connection's "
        "messages in order; 0 runs it in threads of this process with its management API "
        f"calls over HTTP, the old path (default: one per CPU, {default_worker_count()} here)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--static-dir",
        type=Path,
        default=None,
        help="directory served at / to plain GET requests (default: the bundled frontend/)",
    )
    parser.add_argument(
        "--log-level",
        default="DEBUG",
        choices=LOG_LEVELS,
        help="DEBUG shows every line of the troubleshooting guide (default: %(default)s)",
    )


def raise_open_file_limit() -> None:
    """Each connection is a file descriptor; allow as many as the system lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(
            OSError, ValueError
        ):  # a sandbox may forbid it: keep the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _checked_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for option, value in (
        ("--idle-timeout", args.idle_timeout),
        ("--max-connection-age", args.max_connection_age),
    ):
        if value <= 0:
            parser.error(f"{option} must be a positive number of seconds")
    if args.rate_limit < 0:
        parser.error("--rate-limit must be 0 (off) or a positive number of messages per second")
    for option, count in (
        ("--max-connections", args.max_connections),
        ("--max-connections-per-ip", args.max_connections_per_ip),
        ("--max-connections-per-token", args.max_connections_per_token),
        ("--handlers-per-token", args.handlers_per_token),
        ("--handler-queue", args.handler_queue),
    ):
        if count < 1:
            parser.error(f"{option} must be a positive number")
    if args.handler_workers is not None and not 0 <= args.handler_workers <= MAX_HANDLER_WORKERS:
        parser.error(f"--handler-workers must be between 0 and {MAX_HANDLER_WORKERS}")
    if args.max_send_buffer < MAX_MESSAGE_BYTES:
        parser.error(
            f"--max-send-buffer must be at least {MAX_MESSAGE_BYTES} bytes (the largest message)"
        )
    for option, port in (("--port", args.port), ("--management-port", args.management_port)):
        if port is not None and not 0 <= port <= 65535:
            parser.error(f"{option} must be between 0 and 65535")
    if args.apps_port is not None and not -1 <= args.apps_port <= 65535:
        parser.error("--apps-port must be between 0 and 65535, or -1 to serve no app origin")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", args.stage):
        parser.error("--stage must be letters, digits, '_' or '-' (it is the URL path)")
    if args.static_dir is not None and not args.static_dir.is_dir():
        parser.error(f"--static-dir {args.static_dir} is not a directory")


def load_management_secret(path: Path) -> str:
    """The management secret a file holds; SecretError says why it cannot be used."""
    secret = load_secret_file(path)
    if path.stat().st_mode & 0o077:
        raise SecretError(
            f"the management secret file {path} is open to other users; make it readable "
            f"by its owner only (chmod 600 {path})"
        )
    try:
        return secret.decode("utf-8")  # botocore takes the secret access key as text
    except UnicodeDecodeError:
        raise SecretError(
            f"the management secret file {path} is not text; create one with "
            f"`homelab-p2p token new-secret --out {path}`"
        ) from None


async def serve(
    config: GatewayConfig,
    settings: Settings,
    revocations: RevocationList | None = None,
    metrics_address: tuple[str, int] | None = None,
    pool: HandlerPool | None = None,
) -> int:
    """Serve until a signal; ``pool`` runs the handler (None: threads, the old path)."""

    def make_invoker(management_url: str) -> Invoker:
        if pool is not None:
            return pool
        # The handler signs its management API calls as it does on AWS, with the secret the
        # management API checks (sigv4.py): no other local user can call that API.
        handler = SignalingApp.from_settings(
            replace(settings, management_endpoint=management_url),
            _management_session(config.management_secret),
            MANAGEMENT_CLIENT_CONFIG,
            revoked=revocations.current if revocations is not None else None,
        )
        return ThreadInvoker(handler, HANDLER_THREADS)

    gateway = Gateway(config, make_invoker)
    if not await _started(gateway):
        return 1
    endpoint = None
    if metrics_address is not None:
        REGISTRY.register(GatewayCollector(lambda: gateway.open_connections))
        endpoint = MetricsEndpoint()
        try:
            await endpoint.start(*metrics_address)
        except OSError as exc:
            await gateway.close()
            print(
                f"{PROG}: cannot serve metrics on {metrics_address[0]}:{metrics_address[1]}: "
                f"{exc.strerror or exc}; choose another --metrics-address.",
                file=sys.stderr,
            )
            return 1
    stop = stop_on_signal()
    workers_lost = False
    if pool is not None:

        def all_lost() -> None:
            nonlocal workers_lost
            workers_lost = True
            stop.set()

        pool.on_all_lost = all_lost
    _announce(gateway)
    interval = watchdog_interval()
    # The gateway's health is its event loop answering: the pings stop when it blocks.
    watching = asyncio.create_task(keep_watchdog(interval, lambda: None)) if interval else None
    notify(READY="1")
    await stop.wait()
    log.info("Shutting down: closing %d connections", gateway.open_connections)
    notify(STOPPING="1")
    if watching is not None:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    await gateway.close()
    if endpoint is not None:
        await endpoint.close()
    if workers_lost:
        print(
            f"{PROG}: every handler worker is gone (the log says why); the gateway stopped. "
            "Start it again, or with --handler-workers 0 to run the handler in this process.",
            file=sys.stderr,
        )
        return 1
    log.info("Stopped")
    return 0


async def _started(gateway: Gateway) -> bool:
    """Start ``gateway``; False (and one sentence on stderr) if it cannot."""
    config = gateway.config
    try:
        await gateway.start()
    except PoolError as exc:
        await gateway.close()
        print(f"{PROG}: {exc}.", file=sys.stderr)
        return False
    except OSError as exc:
        await gateway.close()
        print(
            f"{PROG}: cannot listen on {config.host}:{config.port} (management API on port "
            f"{config.management_port_to_bind()}, app origin on port {config.apps_port_to_bind()}"
            f"): {exc.strerror or exc}; is another gateway running? Choose other ports with "
            "--port, --management-port and --apps-port.",
            file=sys.stderr,
        )
        return False
    return True


def _announce(gateway: Gateway) -> None:
    """What it serves: the URL on stdout (and to systemd), every address in the log."""
    config = gateway.config
    print(f"Serving {gateway.url}", flush=True)
    notify(STATUS=f"Serving {gateway.url}")
    log.info(
        "Serving %s (management API on %s, loopback only)", gateway.url, gateway.management_url
    )
    if config.static_dir is not None:
        log.info("Serving %s at http://%s:%d/", config.static_dir, config.host, gateway.port)
    if gateway.apps_port is not None:
        log.info(
            "Serving the browser proxy's app origin at http://%s:%d/ (open proxy.html on %d)",
            config.host,
            gateway.apps_port,
            gateway.port,
        )


def _management_session(management_secret: str) -> boto3.session.Session:
    """The handler's AWS session: it signs with the secret the management API checks."""
    return boto3.session.Session(
        aws_access_key_id="signaling-gateway",
        aws_secret_access_key=management_secret,
        region_name="us-east-1",
    )


def in_process_client(
    management: InProcessManagementApi, management_secret: str, endpoint: str
) -> "ApiGatewayManagementApiClient":
    """A handler worker's management client: botocore builds, signs and parses its calls as
    on AWS; ``management`` answers them in process."""
    client = _management_session(management_secret).client(
        "apigatewaymanagementapi", endpoint_url=endpoint, config=MANAGEMENT_CLIENT_CONFIG
    )
    management.register(client.meta.events)
    return client


def start_pool(
    size: int,
    config: GatewayConfig,
    settings: Settings,
    revocations: RevocationList | None,
) -> HandlerPool:
    """Fork the handler workers (before the event loop: a fork copies no running thread)."""

    def build_handler(management: InProcessManagementApi, registry: SharedRegistry) -> Handler:
        make_client = partial(in_process_client, management, config.management_secret)
        endpoint = IN_PROCESS_ENDPOINT.format(stage=config.stage)
        return SignalingApp(
            replace(settings, management_endpoint=endpoint),
            registry,
            ConnectionsDirectory(make_client, endpoint),
            revoked=revocations.current if revocations is not None else None,
        )

    return HandlerPool(size, config.stage, settings.registry_ttl_seconds, build_handler)


def _gateway_config(args: argparse.Namespace, management_secret: str) -> GatewayConfig:
    static_dir = args.static_dir
    if static_dir is None:
        static_dir = next((d for d in FRONTEND_DIRS if (d / "index.html").is_file()), None)
    return GatewayConfig(
        host=args.host,
        port=args.port,
        stage=args.stage,
        management_port=args.management_port,
        apps_port=args.apps_port,
        idle_timeout=args.idle_timeout,
        max_connection_age=args.max_connection_age,
        rate_limit=args.rate_limit,
        static_dir=static_dir,
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_connections_per_ip,
        max_connections_per_token=args.max_connections_per_token,
        max_send_buffer=args.max_send_buffer,
        handlers_per_token=args.handlers_per_token,
        handler_queue=args.handler_queue,
        management_secret=management_secret,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _checked_args(parser, args)
    configure_logging(args.log_level)
    if 0 < args.rate_limit < LINK_SEND_RATE:
        log.warning(
            "--rate-limit %g is below the %g messages a second a homelab's signaling link may "
            "send: a homelab answering many clients at once will have answers refused; use %g "
            "or more (or 0 for no limit)",
            args.rate_limit,
            LINK_SEND_RATE,
            LINK_SEND_RATE,
        )
    secret = None
    if args.no_auth:
        log.warning(
            "AUTHENTICATION IS OFF (--no-auth): anyone who reaches this port can connect and "
            "register any homelab name. Use --secret-file for anything but a local test."
        )
    else:
        try:
            secret = load_secret_file(args.secret_file)
        except SecretError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
    management_secret = new_management_secret()
    if args.management_secret_file is not None:
        try:
            management_secret = load_management_secret(args.management_secret_file)
        except SecretError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
    settings = Settings(
        registry_backend="memory",
        auth_enabled=not args.no_auth,
        secret=secret,
        log_level=args.log_level,
    )
    try:
        revocations = RevocationList(args.revocation_file) if args.revocation_file else None
    except IdentityError as exc:
        print(f"{PROG}: --revocation-file: {exc}", file=sys.stderr)
        return 2
    raise_open_file_limit()
    config = _gateway_config(args, management_secret)
    workers = default_worker_count() if args.handler_workers is None else args.handler_workers
    pool = start_pool(workers, config, settings, revocations) if workers else None
    return asyncio.run(serve(config, settings, revocations, args.metrics_address, pool))


if __name__ == "__main__":
    sys.exit(main())
