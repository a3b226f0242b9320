"""The revocation list: credential ids that are no longer good, from a file Ansible writes.

``{"revoked": [{"id": "0123456789abcdef", "name": "alice-laptop", "revoked_at": "..."}]}``;
only ``id`` counts, the rest is for people. The file is read again whenever it changed
(``current()`` compares its modification time and size), so a revocation takes effect
without a restart. A file that turns unreadable or malformed keeps the last good list in
force, with one warning: an attacker who can spoil the file must not lift revocations.
"""

import json
import logging
import os
from pathlib import Path

from p2p_protocol.identity import IdentityError

MAX_REVOCATION_FILE = 4 * 1024 * 1024
"""Bytes of a revocation list (about 60,000 entries)."""

log = logging.getLogger("p2p_runtime.revocation")


def parse_revocations(text: str, origin: str) -> frozenset[str]:
    try:
        document = json.loads(text)
    except ValueError:
        raise IdentityError(f"{origin} is not JSON") from None
    entries = document.get("revoked") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise IdentityError(f'{origin} needs {{"revoked": [{{"id": ...}}, ...]}}')
    ids = set()
    for entry in entries:
        ident = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(ident, str):
            raise IdentityError(f'{origin}: every entry of "revoked" needs an "id"')
        ids.add(ident)
    return frozenset(ids)


class RevocationList:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._ids: frozenset[str] = frozenset()
        self._warned = False
        if path is not None:
            self._ids = self._read()  # at start, a bad file is an error, not a warning

    def _read(self) -> frozenset[str]:
        assert self.path is not None
        try:
            stat = os.stat(self.path)
            if stat.st_size > MAX_REVOCATION_FILE:
                raise IdentityError(f"{self.path} is larger than {MAX_REVOCATION_FILE} bytes")
            text = self.path.read_text()
        except OSError as exc:
            raise IdentityError(
                f"cannot read the revocation list {self.path}: {exc.strerror or exc}"
            ) from None
        ids = parse_revocations(text, f"the revocation list {self.path}")
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return ids

    def current(self) -> frozenset[str]:
        """The ids revoked now, read again if the file changed since the last look."""
        if self.path is None:
            return self._ids
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                before = self._ids
                self._ids = self._read()
                self._warned = False
                if self._ids != before:
                    log.info(
                        "Revocation list %s reloaded: %d credentials revoked",
                        self.path,
                        len(self._ids),
                    )
        except (OSError, IdentityError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s; the last list read stays in force", exc)
        return self._ids
