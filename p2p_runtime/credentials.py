"""Reading credentials from files: a signing secret, a token. Kept out of the protocol core,
which does no I/O."""

from pathlib import Path
from typing import TextIO

from p2p_protocol.tokens import SecretError, check_secret


class TokenFileError(ValueError):
    """A token file that cannot be used; str() names the file and why."""


def load_secret_file(path: str | Path) -> bytes:
    """Read a secret file (surrounding whitespace ignored) and check its length."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SecretError(
            f"cannot read the secret file {path}: {exc.strerror or exc}; create one with "
            f"`homelab-p2p token new-secret --out {path}`"
        ) from None
    return check_secret(raw.strip(), f"the secret file {path}")


def load_secret_from(path: Path | None, stdin: TextIO | None) -> bytes | None:
    """The secret in ``path``, else the first line of ``stdin`` (off the disk and any command
    line), checked; None when neither is given."""
    if path is not None:
        return load_secret_file(path)
    if stdin is not None:
        return check_secret(stdin.readline().strip().encode(), "the secret on stdin")
    return None


def read_token_file(path: Path) -> str:
    """The token a file holds, as it is now (so it can be rotated in place)."""
    try:
        token = path.expanduser().read_text().strip()
    except OSError as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if not token:
        raise TokenFileError(f"the token file {path} is empty")
    return token
