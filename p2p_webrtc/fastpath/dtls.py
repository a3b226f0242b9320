"""DTLS for the fast data path: records through OpenSSL directly, corked sends.

aiortc's RTCDtlsTransport goes through pyOpenSSL for each record: a fresh buffer per call
and an exception after every read (``WantReadError`` when the output BIO is empty), which
costs more than the encryption. ``FastDtlsTransport`` calls the same OpenSSL functions on
the same ``SSL`` object through pyOpenSSL's cffi binding, with two buffers allocated once,
and checks return codes instead of raising. The handshake, the shutdown and every error
case stay aiortc's or pyOpenSSL's own code; a Python error in the fast code turns the
transport back to the standard path for good, with one warning.

While the SCTP transport sends a burst it corks this transport: the records collect and
leave together at the end (in one GSO system call where the socket offers it).
"""

import logging
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from OpenSSL import SSL
from OpenSSL._util import ffi, lib

from p2p_webrtc.fastpath.udp import DTLS_FIRST_BYTES, FastHostProtocol

log = logging.getLogger("p2p_webrtc.fastpath")

RECORD_BUFFER = 1500  # aiortc's own read size for both directions

# pyOpenSSL's private names this module uses (pyOpenSSL 26.4.0, the version pyproject.toml pins).
CONNECTION_PRIVATE = ("_ssl", "_into_ssl", "_from_ssl", "_raise_ssl_error")
OPENSSL_NAMES = (
    "BIO_read",
    "BIO_write",
    "SSL_read",
    "SSL_write",
    "SSL_get_error",
    "ERR_clear_error",
    "SSL_ERROR_ZERO_RETURN",
    "SSL_ERROR_WANT_READ",
)


def check_pyopenssl() -> None:
    """Raises AttributeError naming what this module needs and pyOpenSSL lacks.

    Checked once at install, so that a pyOpenSSL without them leaves the standard path
    running instead of failing in the middle of a connection."""
    connection = SSL.Connection(SSL.Context(SSL.DTLS_METHOD))  # aiortc's kind: memory BIOs
    for name in CONNECTION_PRIVATE:
        getattr(connection, name)
    for name in OPENSSL_NAMES:
        getattr(lib, name)


class FastDtlsTransport(RTCDtlsTransport):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast = True
        self._plain = ffi.new("char[]", RECORD_BUFFER)
        self._record = ffi.new("char[]", RECORD_BUFFER)
        self._corked: list[bytes] | None = None

    # aiortc's private state this class reads and updates (aiortc 1.16.0).
    def _handshake_done(self) -> bool:
        return bool(self._RTCDtlsTransport__handshake_done)  # type: ignore[attr-defined]

    def _count_received(self, size: int) -> None:
        self._RTCDtlsTransport__rx_bytes += size  # type: ignore[attr-defined]
        self._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]

    def _count_sent(self, size: int) -> None:
        self._RTCDtlsTransport__tx_bytes += size  # type: ignore[attr-defined]
        self._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]

    def _fall_back(self, exc: Exception) -> None:
        self._fast = False
        log.warning(
            "The fast DTLS path failed (%s: %s); this connection continues on the standard path",
            type(exc).__name__,
            exc,
        )

    # --- receiving ---------------------------------------------------------------------

    async def _recv_next(self) -> None:
        if not (self._fast and self._handshake_done()):
            await super()._recv_next()
            return
        connection = self.transport._connection
        queue = connection._queue
        if queue.empty():
            # Everything that arrived is handled: the SCTP side may acknowledge it now.
            drained = getattr(self._data_receiver, "_receive_drained", None)
            if drained is not None:
                await drained()
            item = await queue.get()
        else:
            item = queue.get_nowait()
        if item is None:
            raise ConnectionError("Connection lost while receiving data")
        data = item[0]
        self._count_received(len(data))
        if data[0] not in DTLS_FIRST_BYTES:
            return  # SRTP: the bridge negotiates no media
        try:
            plain = self._decrypt(data)
        except Exception as exc:
            self._fall_back(exc)
            return
        await self._flush_records()
        if plain is None:
            raise ConnectionError("DTLS shutdown by remote party")
        if self._data_receiver is not None:
            for packet in plain:
                await self._data_receiver._handle_data(packet)

    def _decrypt(self, data: bytes) -> list[bytes] | None:
        """The plaintext records in ``data``; None once the peer has closed DTLS."""
        assert self._ssl is not None
        ssl = self._ssl._ssl
        lib.BIO_write(self._ssl._into_ssl, data, len(data))
        records = []
        while True:
            size = lib.SSL_read(ssl, self._plain, RECORD_BUFFER)
            if size > 0:
                records.append(ffi.buffer(self._plain, size)[:])
                continue
            error = lib.SSL_get_error(ssl, size)
            if error == lib.SSL_ERROR_ZERO_RETURN:
                return None
            if error != lib.SSL_ERROR_WANT_READ:
                lib.ERR_clear_error()  # aiortc drops a record that does not decrypt, too
            return records

    # --- sending -----------------------------------------------------------------------

    async def _send_data(self, data: bytes) -> None:
        if not (self._fast and self._ssl is not None):
            await super()._send_data(data)
            return
        if self._state != State.CONNECTED:
            raise ConnectionError("Cannot send encrypted data, not connected")
        try:
            written = lib.SSL_write(self._ssl._ssl, data, len(data))
        except Exception as exc:
            self._fall_back(exc)
            await super()._send_data(data)
            return
        if written <= 0:
            # pyOpenSSL's own error handling raises what aiortc's path would have raised.
            self._ssl._raise_ssl_error(self._ssl._ssl, written)
        await self._flush_records()

    async def _flush_records(self) -> None:
        """Sends what OpenSSL has written to its output BIO (one record per read)."""
        assert self._ssl is not None
        source = self._ssl._from_ssl
        while (size := lib.BIO_read(source, self._record, RECORD_BUFFER)) > 0:
            datagram = ffi.buffer(self._record, size)[:]
            self._count_sent(size)
            if self._corked is not None:
                self._corked.append(datagram)
            else:
                await self._send_datagrams([datagram])

    def cork(self) -> bool:
        """Collects records instead of sending them; False if already corked."""
        if self._corked is not None:
            return False
        self._corked = []
        return True

    async def uncork(self) -> None:
        datagrams, self._corked = self._corked, None
        if datagrams:
            await self._send_datagrams(datagrams)

    async def _send_datagrams(self, datagrams: list[bytes]) -> None:
        pair = self.transport._connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if isinstance(pair.protocol, FastHostProtocol):
            pair.protocol.send_many(datagrams, pair.remote_addr)
            return
        for datagram in datagrams:  # a TURN relay: aioice wraps each one
            await pair.protocol.send_data(datagram, pair.remote_addr)
