"""``homelab-p2p``: the client and operations command line."""

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, TypeAlias

from homelab_p2p import agentwire, commands
from homelab_p2p.agentcli import add_agent_parser
from homelab_p2p.agentstart import start_agent
from homelab_p2p.client import ClientOptions
from homelab_p2p.clientconfig import add_connection_options, agent_settings, client_options
from homelab_p2p.credential_cli import add_credential_parsers
from homelab_p2p.credential_cli import ttl_argument as _ttl
from homelab_p2p.doctor import guide, report
from homelab_p2p.doctor.checks import Doctor
from homelab_p2p.echo import echo
from homelab_p2p.fetchrequest import FetchRequestError, fetch_request
from homelab_p2p.launcher import through_running_agent
from homelab_p2p.status import add_status_parser
from p2p_protocol.tokens import (
    ROLES,
    SecretError,
    TokenError,
    check_secret,
    issue_token,
    verify_token,
)
from p2p_runtime.addresses import split_host_port
from p2p_runtime.configfile import ConfigError
from p2p_runtime.credentials import load_secret_from
from p2p_runtime.logs import configure_logging

PROG = "homelab-p2p"
log = logging.getLogger("homelab_p2p.client")
NEW_SECRET_BYTES = 32


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Reach the services of a homelab behind NAT over WebRTC."
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `homelab-p2p --help` lists them.
    for add in (
        _add_token_parsers,
        add_credential_parsers,
        _add_forward_parser,
        _add_pipe_parser,
        _add_fetch_parser,
        _add_echo_parser,
        _add_doctor_parser,
        add_status_parser,
        add_agent_parser,
        _add_guide_parser,
    ):
        add(subcommands)
    return parser


def _add_token_parsers(subcommands: Subcommands) -> None:
    token = subcommands.add_parser("token", help="issue signaling tokens and make secrets")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    _add_token_issue_parser(actions)
    _add_token_verify_parser(actions)
    _add_new_secret_parser(actions)


def _add_token_issue_parser(actions: Subcommands) -> None:
    issue = actions.add_parser(
        "issue", help="print a signed token", description="Print a token signed with the secret."
    )
    issue.add_argument(
        "--role", required=True, choices=ROLES, help="homelab (may register) or client"
    )
    issue.add_argument("--name", required=True, help="the homelab's name, or a label for a client")
    issue.add_argument(
        "--homelab",
        action="append",
        default=[],
        help="a homelab a client token may reach (repeat; required for --role client)",
    )
    issue.add_argument(
        "--ttl",
        type=_ttl,
        default="30d",
        help="lifetime: seconds, or a number with s/m/h/d (default: 30d)",
    )
    _add_secret_options(issue)
    issue.set_defaults(run=_issue)


def _add_token_verify_parser(actions: Subcommands) -> None:
    verify = actions.add_parser(
        "verify",
        help="check a token (from stdin or --token-file) against the secret",
        description="Check a token against the secret: its claims as JSON, or exit 1 saying why.",
    )
    _add_secret_options(verify)
    verify.add_argument("--token-file", type=Path, help="read the token here instead of stdin")
    verify.add_argument("--role", choices=ROLES, help="the role it must have")
    verify.add_argument("--name", help="the name it must have")
    verify.add_argument(
        "--min-ttl", type=_ttl, default=0, help="it must stay valid this long (such as 7d)"
    )
    verify.set_defaults(run=_verify)


def _add_new_secret_parser(actions: Subcommands) -> None:
    new_secret = actions.add_parser(
        "new-secret",
        help="write a new random signing secret",
        description="Write a new random signing secret to a file readable by its owner only.",
    )
    new_secret.add_argument("--out", type=Path, required=True, help="file to create")
    new_secret.add_argument("--force", action="store_true", help="replace the file if it exists")
    new_secret.set_defaults(run=_new_secret)


def _add_forward_parser(subcommands: Subcommands) -> None:
    forward = commands_parser(subcommands, "forward", "forward local TCP connections to a service")
    forward.add_argument(
        "--listen",
        required=True,
        type=_host_port,
        metavar="HOST:PORT",
        help="where to accept connections, such as 127.0.0.1:2222",
    )
    forward.set_defaults(run=_forward)


def _add_pipe_parser(subcommands: Subcommands) -> None:
    pipe = commands_parser(
        subcommands, "pipe", "connect stdin/stdout to a service (for ssh ProxyCommand)"
    )
    pipe.set_defaults(run=_pipe)


def _add_fetch_parser(subcommands: Subcommands) -> None:
    fetch = commands_parser(subcommands, "fetch", "send one HTTP request to an http:// service")
    fetch.add_argument("path", help="the request path, such as / or /api/items?limit=5")
    fetch.add_argument(
        "-X",
        "--request",
        dest="method",
        default=None,
        help="method (default: GET, or POST with -d)",
    )
    fetch.add_argument(
        "-H", "--header", action="append", default=[], type=_header, metavar="'NAME: VALUE'"
    )
    body = fetch.add_mutually_exclusive_group()
    body.add_argument("-d", "--data", help="request body")
    body.add_argument("--data-file", type=Path, help="request body from a file")
    fetch.add_argument("-o", "--output", type=Path, help="write the body here instead of stdout")
    fetch.add_argument(
        "-i", "--include", action="store_true", help="print the status and headers first"
    )
    fetch.add_argument("--fail", action="store_true", help="exit 22 when the status is 400 or more")
    fetch.set_defaults(run=_fetch)


def _add_echo_parser(subcommands: Subcommands) -> None:
    echo_parser = connection_parser(
        subcommands,
        "echo",
        "send a message to yourself through signaling (the guide's manual test)",
        "Connect to signaling with the token, send a message to `me` and wait for it to come "
        "back. Exit status 0 when it does, 3 when signaling cannot be reached, 1 when it answers "
        "wrongly.",
    )
    echo_parser.set_defaults(run=_echo)


def _add_doctor_parser(subcommands: Subcommands) -> None:
    doctor = connection_parser(
        subcommands,
        "doctor",
        "run the troubleshooting guide's checks in order, naming the guide's row on failure",
        "Check the signaling URL, the WebSocket handshake, an echo, the target, the STUN and "
        "TURN servers and a WebRTC connection to the target's echo channel. Exit status 0 only "
        "when no check fails.",
    )
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")
    doctor.set_defaults(run=_doctor)


def _add_guide_parser(subcommands: Subcommands) -> None:
    guide_parser = subcommands.add_parser(
        "guide",
        help="print the troubleshooting guide's rows, or the rows log lines point at",
        description="Print the troubleshooting guide's error table (error, cause, solution). "
        "With --match, read log lines (a file, or - for stdin) and print a finding for each row "
        "they point at.",
    )
    guide_parser.add_argument("--match", metavar="FILE", help="log lines to match; - for stdin")
    guide_parser.add_argument("--json", action="store_true", help="print JSON")
    guide_parser.set_defaults(run=_guide)


def _add_secret_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--secret-file", type=Path, help="the signing secret, in a file")
    source.add_argument(
        "--secret-env",
        metavar="NAME",
        help="the signing secret, in this environment variable (keeps it off the disk)",
    )
    source.add_argument(
        "--secret-stdin",
        action="store_true",
        help="the signing secret, the first line of stdin (off the disk and any command line; "
        "verify then reads the token from the rest of stdin or --token-file)",
    )


def _load_secret(args: argparse.Namespace) -> bytes:
    given = load_secret_from(args.secret_file, sys.stdin if args.secret_stdin else None)
    if given is not None:
        return given
    value = os.environ.get(args.secret_env, "").strip()
    if not value:
        raise SecretError(f"the environment variable {args.secret_env} is not set or empty")
    return check_secret(value.encode(), f"the environment variable {args.secret_env}")


def connection_parser(
    subcommands: Subcommands,
    name: str,
    help_text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A command that talks to signaling: the connection options and -v."""
    parser = subcommands.add_parser(
        name, help=help_text, description=description or help_text[0].upper() + help_text[1:] + "."
    )
    add_connection_options(parser)
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v for progress, -vv for detail"
    )
    return parser


def commands_parser(subcommands: Subcommands, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command that reaches one service of the homelab."""
    parser = connection_parser(subcommands, name, help_text)
    parser.add_argument("service", help="the service's data channel label, such as ssh or web")
    return parser


def _host_port(text: str) -> tuple[str, int]:
    address = split_host_port(text, lowest_port=0)
    if address is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return address


def _client_command(
    args: argparse.Namespace,
    run: Callable[[ClientOptions], Coroutine[Any, Any, int]],
    reaches_homelab: bool = True,
    agent: Literal["", "command", "connections"] = "",
) -> int:
    """``run`` with the options; one that only talks to signaling needs no credential.

    ``agent``: "command" hands the whole command to the client agent when it may (started
    now if none runs), "connections" only makes sure one runs (``forward`` hands it each
    connection); ``args.agent_runs`` says whether one does."""
    configure_logging(("WARNING", "INFO", "DEBUG")[min(args.verbose, 2)])
    try:
        options = client_options(args, needs_credential=reaches_homelab)
        settings = agent_settings(args)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    args.agent_runs = False
    if agent and settings.enabled and agentwire.agent_allowed(args.argv):
        args.agent_runs = _agent_runs(settings.idle_timeout)
        if agent == "command" and args.agent_runs:
            status = through_running_agent(args.argv)
            if status is not None:
                return status
    return asyncio.run(run(options))


def _agent_runs(idle_timeout: float) -> bool:
    """Whether a client agent runs, started now if none did."""
    path = agentwire.socket_path()
    running = agentwire.connect(path)
    if running is not None:
        running.close()
        return True
    problem = start_agent(Path(path), idle_timeout)
    if problem is not None:
        log.warning("The client agent at %s did not start: %s; going without it", path, problem)
    return problem is None


def _forward(args: argparse.Namespace) -> int:
    host, port = args.listen

    def run(options: ClientOptions) -> Coroutine[Any, Any, int]:
        through = args.argv if args.agent_runs else None
        return commands.forward(options, args.service, host, port, through)

    return _client_command(args, run, agent="connections")


def _header(text: str) -> tuple[str, str]:
    name, separator, value = text.partition(":")
    if not separator or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def _fetch(args: argparse.Namespace) -> int:
    try:
        request = fetch_request(args)
    except FetchRequestError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return _client_command(
        args, lambda options: commands.fetch(options, args.service, request), agent="command"
    )


def _doctor(args: argparse.Namespace) -> int:
    async def run(options: ClientOptions) -> int:
        results = await Doctor(options).run()
        if args.json:
            report.as_json(results, options.signaling_url, options.target)
        else:
            report.text(results)
        return 1 if any(r.status == "fail" for r in results) else 0

    return _client_command(args, run)


def _guide(args: argparse.Namespace) -> int:
    if args.match is None:
        rows = {key: dataclasses.asdict(row) for key, row in guide.ROWS.items()}
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for key, row in rows.items():
                print(f"{key}: {row['error']}")
                print(f"    cause: {row['cause']}\n    solution: {row['solution']}")
        return 0
    try:
        text = (
            sys.stdin.read() if args.match == "-" else Path(args.match).read_text(errors="replace")
        )
    except OSError as exc:
        print(f"{PROG}: cannot read {args.match}: {exc.strerror}", file=sys.stderr)
        return 2
    findings = [f.as_dict() for f in guide.match_lines(text.splitlines())]
    if args.json:
        print(json.dumps(findings, indent=2))
    else:
        for found in findings:
            print(f"{found['row']}: {found['finding']}\n    solution: {found['solution']}")
    return 0


def _echo(args: argparse.Namespace) -> int:
    return _client_command(args, echo, reaches_homelab=False)


def _pipe(args: argparse.Namespace) -> int:
    return _client_command(
        args, lambda options: commands.pipe(options, args.service), agent="command"
    )


def _issue(args: argparse.Namespace) -> int:
    try:
        secret = _load_secret(args)
        homelabs = tuple(dict.fromkeys(args.homelab))
        print(issue_token(secret, args.role, args.name, args.ttl, homelabs=homelabs))
    except (SecretError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        secret = _load_secret(args)
        text = args.token_file.read_text() if args.token_file else sys.stdin.read()
        claims = verify_token(secret, text.strip(), now=time.time() + args.min_ttl)
    except (SecretError, TokenError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"{PROG}: {reason}", file=sys.stderr)
        return 1
    for field, expected in (("role", args.role), ("name", args.name)):
        if expected is not None and getattr(claims, field) != expected:
            print(
                f"{PROG}: the token's {field} is {getattr(claims, field)!r}, not {expected!r}",
                file=sys.stderr,
            )
            return 1
    print(json.dumps({"role": claims.role, "name": claims.name, "expires_at": claims.expires_at}))
    return 0


def _new_secret(args: argparse.Namespace) -> int:
    path: Path = args.out
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        print(f"{PROG}: {path} already exists; pass --force to replace it", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: cannot create {path}: {exc.strerror}", file=sys.stderr)
        return 2
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # --force on an existing file keeps its old mode otherwise
        out.write(secrets.token_urlsafe(NEW_SECRET_BYTES) + "\n")
    print(f"Wrote a new signing secret to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv  # what the client agent is handed
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
