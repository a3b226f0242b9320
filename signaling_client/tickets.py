"""Reply tickets: what signaling hands a homelab with each client's signal, and wants back
with the homelab's answer to that client (p2p_protocol.tokens.reply_ticket)."""

from collections import OrderedDict

MAX_REMEMBERED = 4096
"""Clients whose ticket is kept; the least recent is forgotten first (its peer is long gone)."""


class ReplyTickets:
    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._tickets: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def remember(self, client: str, ticket: str) -> None:
        self._tickets.pop(client, None)
        self._tickets[client] = ticket
        while len(self._tickets) > self._limit:
            self._tickets.popitem(last=False)

    def for_client(self, client: str) -> str | None:
        return self._tickets.get(client)
