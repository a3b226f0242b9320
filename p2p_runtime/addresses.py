"""``HOST:PORT`` as people type it (``[::1]:9808`` too), for every program's options."""


def split_host_port(text: str, lowest_port: int = 1) -> tuple[str, int] | None:
    """(host, port), or None when ``text`` is not HOST:PORT with a port from ``lowest_port``
    (0: "any free port" where the caller allows it) to 65535; the caller says what is wrong."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not lowest_port <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)
