"""Filters of the turn_server role.

``turn_rest_credentials``: a username and credential for coturn's use-auth-secret scheme.

    {{ secret | turn_rest_credentials('homelab', 30) }}

The username is ``EXPIRY:NAME`` and the credential base64(HMAC-SHA1(secret, username)), as
coturn checks them. EXPIRY is the end of the lifetime period after the current one, so the
result is the same for every run within a period (a second run changes nothing) and always
valid for at least one more period.
"""

import base64
import hashlib
import hmac
import time


def turn_rest_credentials(secret, name, lifetime_days, now=None):
    period = int(lifetime_days) * 86400
    current = int(now if now is not None else time.time())
    expiry = (current // period + 2) * period
    username = "%d:%s" % (expiry, name)
    digest = hmac.new(str(secret).encode(), username.encode(), hashlib.sha1).digest()
    return {"username": username, "credential": base64.b64encode(digest).decode()}


def turn_ice_servers(login, address, port, tls_port=None):
    """The ICE server entries (urls, username, credential) clients configure for this server."""
    urls = [
        "turn:%s:%s?transport=udp" % (address, port),
        "turn:%s:%s?transport=tcp" % (address, port),
    ]
    if tls_port:
        urls.append("turns:%s:%s?transport=tcp" % (address, tls_port))
    return [dict(login, urls=url) for url in urls]


class FilterModule:
    def filters(self):
        return {
            "turn_rest_credentials": turn_rest_credentials,
            "turn_ice_servers": turn_ice_servers,
        }
