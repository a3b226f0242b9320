"""What the running daemon tells ``homelab-p2p status``: a JSON snapshot on a Unix socket.

A reader connects to ``status_socket`` (config.yml; the role puts it in
``/run/homelab-p2p-bridge/``, mode 0660, the daemon's group), gets one JSON document and the
end of the stream. The daemon reads nothing from it, so a reader can ask for nothing else.
At most ``MAX_READERS`` are served at once; another one is closed at once, with a log line.
"""

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2p_runtime.tasks import OwnedTasks

log = logging.getLogger("homelab_server")

MAX_READERS = 8
"""Readers served at once: the snapshot is small, so more than this is not a person."""
WRITE_TIMEOUT = 5.0
"""Seconds a reader has to take its snapshot before it is dropped."""
SOCKET_MODE = 0o660
"""Owner and group may connect (connecting to a Unix socket needs write permission)."""
SCHEMA = 1
"""The snapshot's version: a reader refuses one it does not know."""

Snapshot = Callable[[], dict[str, Any]]


class StatusSocket:
    """Serves ``snapshot()`` as JSON to each reader of ``path``."""

    def __init__(self, path: Path, snapshot: Snapshot) -> None:
        self._path = path
        self._snapshot = snapshot
        self._server: asyncio.Server | None = None
        self._readers = OwnedTasks(log, "Answering a status reader")
        self._busy_logged = False

    async def start(self) -> None:
        """Bind the socket, replacing a stale one of an earlier run (never another file)."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(self._path.lstat().st_mode):
                raise OSError(
                    f"{self._path} exists and is not a socket; remove it or choose another "
                    "status_socket"
                )
            self._path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=self._path)
        os.chmod(self._path, SOCKET_MODE)
        log.info("Status: %s (homelab-p2p status --socket %s)", self._path, self._path)

    async def close(self) -> None:
        if self._server is None:
            return  # never bound: whatever is at the path is not ours
        self._server.close()
        await self._server.wait_closed()
        await self._readers.cancel()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        del reader  # the daemon reads nothing from a status reader
        if len(self._readers) >= MAX_READERS:
            if not self._busy_logged:
                log.warning("Status: %d readers at once already; closing another", MAX_READERS)
                self._busy_logged = True
            writer.close()
            return
        self._busy_logged = False
        self._readers.spawn(self._answer(writer))

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(self._snapshot()).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass  # the reader left or stalled: nothing of the daemon's depends on it
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)
