"""``homelab-p2p fetch``'s request, as its command line gives it."""

import argparse
from dataclasses import dataclass
from pathlib import Path


class FetchRequestError(Exception):
    """The command line does not make a request; str() says why."""


@dataclass(frozen=True)
class FetchRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    output: Path | None = None
    include: bool = False
    fail: bool = False


def fetch_request(args: argparse.Namespace) -> FetchRequest:
    if not args.path.startswith("/"):
        raise FetchRequestError(f"the path must start with '/', not {args.path!r}")
    try:
        body = args.data_file.read_bytes() if args.data_file else (args.data or "").encode()
    except OSError as exc:
        raise FetchRequestError(f"cannot read {args.data_file}: {exc.strerror}") from None
    headers = list(args.header)
    if body and not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(len(body))))
    return FetchRequest(
        method=args.method or ("POST" if body else "GET"),
        path=args.path,
        headers=headers,
        body=body,
        output=args.output,
        include=args.include,
        fail=args.fail,
    )
