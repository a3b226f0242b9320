#!/usr/bin/python
"""Network probes for the pre-deployment checklist: TCP, TLS and a STUN binding request."""

DOCUMENTATION = r"""
---
module: homelab_p2p_probe
short_description: Probe a TCP endpoint, a TLS handshake or a STUN server from the host
description:
  - Runs on the managed host with its own Python and the standard library only.
  - Never changes anything. A probe that fails is not a module failure: the result says
    C(ok=false) and why, so a checklist can collect every answer.
options:
  check:
    description: What to probe.
    type: str
    required: true
    choices: [tcp, tls, stun]
  host:
    description: Host name or address.
    type: str
    required: true
  port:
    description: Port.
    type: int
    required: true
  timeout:
    description: Seconds to wait for an answer.
    type: float
    default: 5
author: homelab-p2p-bridge developers
"""

EXAMPLES = r"""
- name: Does this host reach the signaling service?
  homelab_p2p_probe:
    check: tls
    host: abc123.execute-api.us-east-1.amazonaws.com
    port: 443

- name: Does the STUN server answer?
  homelab_p2p_probe:
    check: stun
    host: stun.example.org
    port: 3478
"""

RETURN = r"""
ok:
  description: Whether the probe succeeded.
  type: bool
  returned: always
detail:
  description: What was found (the mapped address for STUN), or why it failed.
  type: str
  returned: always
"""

import os
import socket
import ssl
import struct
import time

from ansible.module_utils.basic import AnsibleModule

MAGIC_COOKIE = 0x2112A442


def probe_tcp(host, port, timeout):
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout):
        pass
    return "connected in %.0f ms" % ((time.monotonic() - started) * 1000)


def probe_tls(host, port, timeout):
    context = ssl.create_default_context()
    raw = socket.create_connection((host, port), timeout=timeout)
    with context.wrap_socket(raw, server_hostname=host) as tls:
        subject = dict(x[0] for x in tls.getpeercert()["subject"])
        return "TLS %s, certificate for %s" % (tls.version(), subject.get("commonName", host))


def probe_stun(host, port, timeout):
    """A binding request (RFC 5389); the answer's XOR-MAPPED-ADDRESS is how the server sees us."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, MAGIC_COOKIE) + transaction
    address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        sock.sendto(request, address)
        while True:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            data, _ = sock.recvfrom(2048)
            if len(data) >= 20 and data[8:20] == transaction:
                break
    kind, length = struct.unpack("!HH", data[:4])
    if kind != 0x0101:
        raise ValueError(
            "the server answered with STUN message type 0x%04x, not a binding success" % kind
        )
    position = 20
    while position + 4 <= 20 + length:
        attribute, size = struct.unpack("!HH", data[position : position + 4])
        value = data[position + 4 : position + 4 + size]
        if attribute == 0x0020 and value[1] == 0x01:  # XOR-MAPPED-ADDRESS, IPv4
            mapped_port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            mapped = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
            return "mapped address %s:%d" % (
                socket.inet_ntoa(struct.pack("!I", mapped)),
                mapped_port,
            )
        position += 4 + size + (-size % 4)
    return "answered (no IPv4 mapped address in the reply)"


PROBES = {"tcp": probe_tcp, "tls": probe_tls, "stun": probe_stun}


def main():
    module = AnsibleModule(
        argument_spec={
            "check": {"type": "str", "required": True, "choices": list(PROBES)},
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        detail = PROBES[params["check"]](params["host"], params["port"], params["timeout"])
    except (OSError, ValueError, ssl.SSLError) as exc:
        reason = (
            exc.strerror
            if isinstance(exc, OSError) and exc.strerror
            else str(exc) or type(exc).__name__
        )
        module.exit_json(
            changed=False, ok=False, detail="%s:%d: %s" % (params["host"], params["port"], reason)
        )
    module.exit_json(changed=False, ok=True, detail=detail)


if __name__ == "__main__":
    main()
