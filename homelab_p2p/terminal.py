"""Where a command reads, writes and complains: this process's stdio, or in the client agent
the caller's, received as file descriptors (agentwire.py)."""

import asyncio
import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Terminal:
    stdin: int = 0
    stdout: int = 1
    stderr: int = 2

    def fail(self, message: str, status: int = 1) -> int:
        """``homelab-p2p: MESSAGE`` on stderr; returns ``status`` for the command to exit with."""
        with contextlib.suppress(OSError):  # a caller gone away cannot be told anything
            os.write(self.stderr, f"homelab-p2p: {message}\n".encode())
        return status

    async def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """stdin and stdout as asyncio streams; OSError or ValueError when either is not a
        pipe, socket or character device (a regular file, say)."""
        given, taken = os.fstat(self.stdin), os.fstat(self.stdout)
        if stat.S_ISSOCK(given.st_mode) and os.path.samestat(given, taken):
            # One socket both ways (a connection ``forward`` handed to the agent): two pipe
            # transports on one descriptor would each watch it for reading.
            return await asyncio.open_connection(sock=socket.socket(fileno=os.dup(self.stdin)))
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self.stdin, "rb", closefd=False)
        )
        return reader, await self._stdout_writer(reader)

    async def output(self) -> "Output":
        """stdout for a body: a regular file is written as it is, anything else without
        blocking the loop (in the agent, a slow reader must not stall the other commands)."""
        if stat.S_ISREG(os.fstat(self.stdout).st_mode):
            return Output(file_fd=self.stdout)
        return Output(writer=await self._stdout_writer(None))

    async def _stdout_writer(self, reader: asyncio.StreamReader | None) -> asyncio.StreamWriter:
        """stdout as an asyncio stream; the descriptor stays open when the stream closes
        (in the agent it is the caller's, closed with the request)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(self.stdout, "wb", closefd=False)
        )
        return asyncio.StreamWriter(transport, protocol, reader, loop)


PROCESS_STDIO = Terminal()


@dataclass
class Output:
    """Bytes to stdout or a file, one of the two."""

    file_fd: int | None = None
    writer: asyncio.StreamWriter | None = None
    owns_fd: bool = False

    @classmethod
    def to_file(cls, path: Path) -> "Output":
        """OSError when it cannot be created."""
        return cls(
            file_fd=os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), owns_fd=True
        )

    async def write(self, data: bytes) -> None:
        if self.writer is not None:
            try:
                self.writer.write(data)
                await self.writer.drain()
            except ConnectionError as exc:  # asyncio says "lost" for a reader gone away
                raise BrokenPipeError(str(exc)) from None
            return
        assert self.file_fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self.file_fd, view) :]

    async def close(self) -> None:
        if self.owns_fd and self.file_fd is not None:
            os.close(self.file_fd)
        if self.writer is not None:
            # Everything written reaches the reader before the command ends: with no
            # high-water mark, drain() waits until the buffer is empty.
            self.writer.transport.set_write_buffer_limits(high=0)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()
            self.writer.close()
