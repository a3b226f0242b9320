"""``homelab-p2p credential ...``: the operator's key, credentials, the revocation list.

Secrets go to files (0600), never to the terminal or a command line: the operator key and
each credential's private key are read from and written to paths given as options.
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

from p2p_protocol.identity import KINDS, IdentityError
from p2p_protocol.tokens import SecretError, issue_token, parse_ttl
from p2p_runtime.credentials import load_secret_from
from p2p_runtime.identity import (
    Credential,
    expiry_text,
    load_credential,
    load_operator_key,
    new_credential,
    new_operator_key,
    operator_public_text,
    write_private,
)
from p2p_runtime.revocation import parse_revocations

PROG = "homelab-p2p"
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def ttl_argument(text: str) -> int:
    """argparse's type for a lifetime (``parse_ttl``); ``homelab-p2p token`` uses it too."""
    try:
        return parse_ttl(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_credential_parsers(subcommands: Subcommands) -> None:
    credential = subcommands.add_parser(
        "credential",
        help="the operator's key, client and homelab credentials, revocations",
        description="End-to-end identity (docs/security.md): the operator certifies each "
        "client and homelab; the homelab checks each client's credential itself.",
    )
    actions = credential.add_subparsers(dest="credential_command", required=True, metavar="ACTION")

    new = actions.add_parser("new-operator", help="create the operator's signing key")
    new.add_argument("--out", type=Path, required=True, help="where to write it (0600)")
    new.add_argument("--force", action="store_true", help="replace an existing key")
    new.set_defaults(run=_new_operator)

    public = actions.add_parser("operator-key", help="print the operator's public key")
    public.add_argument("--operator-key", type=Path, required=True, help="the operator's key")
    public.set_defaults(run=_operator_key)

    issue = actions.add_parser(
        "issue",
        help="issue a credential to a client or a homelab",
        description="Write a new credential (a new key pair, certified by the operator).",
    )
    issue.add_argument("--operator-key", type=Path, required=True, help="the operator's key")
    issue.add_argument("--kind", choices=KINDS, required=True)
    issue.add_argument("--name", required=True, help="the client's or the homelab's name")
    issue.add_argument(
        "--homelab", action="append", default=[], help="a homelab the client may reach (repeat)"
    )
    issue.add_argument(
        "--service",
        action="append",
        default=[],
        help="a service the client may open (repeat; '*' for every one)",
    )
    issue.add_argument(
        "--ttl", type=ttl_argument, default=ttl_argument("90d"), help="lifetime (default: 90d)"
    )
    secret = issue.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-file",
        type=Path,
        help="signaling's signing secret: also put a signaling token in the credential",
    )
    secret.add_argument(
        "--secret-stdin",
        action="store_true",
        help="the same, the secret read from stdin (off the disk and any command line)",
    )
    issue.add_argument("--out", type=Path, required=True, help="where to write it (0600)")
    issue.add_argument("--force", action="store_true", help="replace an existing file")
    issue.set_defaults(run=_issue)

    show = actions.add_parser("show", help="print a credential's certificate (not its key)")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="as one JSON object")
    show.set_defaults(run=_show)

    revoke = actions.add_parser("revoke", help="add a credential to a revocation list")
    revoke.add_argument("--list", type=Path, required=True, help="the revocation list (JSON)")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--credential-file", type=Path, help="the credential to revoke")
    which.add_argument("--id", help="the id of the credential to revoke")
    revoke.add_argument("--name", default="", help="whose it was (for people reading the list)")
    revoke.set_defaults(run=_revoke)


def _fail(message: object) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _refuse_overwrite(path: Path, force: bool) -> bool:
    if path.exists() and not force:
        _fail(f"{path} already exists; pass --force to replace it")
        return True
    return False


def _new_operator(args: argparse.Namespace) -> int:
    if _refuse_overwrite(args.out, args.force):
        return 2
    try:
        key = new_operator_key(args.out)
    except OSError as exc:
        return _fail(f"cannot write {args.out}: {exc.strerror or exc}")
    print(operator_public_text(key.public_key()))
    return 0


def _operator_key(args: argparse.Namespace) -> int:
    try:
        key = load_operator_key(args.operator_key)
    except IdentityError as exc:
        return _fail(exc)
    print(operator_public_text(key.public_key()))
    return 0


def _issue(args: argparse.Namespace) -> int:
    if _refuse_overwrite(args.out, args.force):
        return 2
    try:
        operator = load_operator_key(args.operator_key)
        secret = load_secret_from(args.secret_file, sys.stdin if args.secret_stdin else None)
        homelabs = tuple(dict.fromkeys(args.homelab))
        credential = new_credential(
            operator,
            args.kind,
            args.name,
            ttl_seconds=args.ttl,
            homelabs=homelabs,
            services=tuple(dict.fromkeys(args.service)),
        )
        if secret is not None:
            # The token names the credential: revoking one refuses the other at signaling.
            token = issue_token(
                secret,
                args.kind,
                args.name,
                args.ttl,
                homelabs=homelabs,
                credential_id=credential.certificate.id,
            )
            credential = dataclasses.replace(credential, signaling_token=token)
        write_private(args.out, credential.to_json())
    except (IdentityError, SecretError, ValueError) as exc:
        return _fail(exc)
    except OSError as exc:
        return _fail(f"cannot write {args.out}: {exc.strerror or exc}")
    print(f"Wrote {args.out}: {_summary(credential)}")
    return 0


def _summary(credential: Credential) -> str:
    certificate = credential.certificate
    scope = f"; {certificate.scope()}" if certificate.kind == "client" else ""
    return f"{certificate.describe()}{scope}; until {expiry_text(certificate.expires_at)}"


def _show(args: argparse.Namespace) -> int:
    try:
        credential = load_credential(args.file)
    except IdentityError as exc:
        return _fail(exc)
    certificate = credential.certificate
    if args.json:
        print(
            json.dumps(
                {
                    "kind": certificate.kind,
                    "name": certificate.name,
                    "id": certificate.id,
                    "expires_at": certificate.expires_at,
                    "homelabs": list(certificate.homelabs),
                    "services": list(certificate.services),
                    "operator": operator_public_text(credential.operator),
                    "signaling_token": bool(credential.signaling_token),
                }
            )
        )
    else:
        print(_summary(credential))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    ident, name = args.id, args.name
    try:
        if args.credential_file is not None:
            certificate = load_credential(args.credential_file).certificate
            ident, name = certificate.id, name or certificate.name
        text = args.list.read_text() if args.list.exists() else '{"revoked": []}'
        revoked = parse_revocations(text, f"the revocation list {args.list}")
    except (IdentityError, OSError) as exc:
        return _fail(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    if ident in revoked:
        print(f"{ident} is revoked already in {args.list}")
        return 0
    document = json.loads(text)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["revoked"].append({"id": ident, "name": name, "revoked_at": stamp})
    try:
        _replace(args.list, json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        return _fail(f"cannot write {args.list}: {exc.strerror or exc}")
    print(f"Revoked {ident} ({name or 'unnamed'}) in {args.list}")
    return 0


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` at once: a daemon reading it sees the old list or the new."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
