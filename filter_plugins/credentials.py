"""Filters the credential tasks decide with: whether a credential the controller holds is
still the one the inventory asks for.

    {{ shown | credential_renewal({'kind': 'client', 'name': 'alice', 'homelabs': ['laptop'],
       'services': ['web']}, operator_public_key, '14d') }}

``shown`` is the registered result of ``homelab-p2p credential show --json FILE``. The filter
is "" when the credential is readable, matches every field of the wish (lists compared as
sets; ``signaling_token: true`` asks only that it carries one), was issued by ``operator`` and
stays valid longer than ``renew_before``; otherwise one short reason, which the play prints.
``ttl_seconds`` reads a lifetime as the CLI does (``90d``).
"""

import json
import re
import time

from ansible.errors import AnsibleFilterError

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def ttl_seconds(text):
    match = re.fullmatch(r"(\d+)([smhd]?)", str(text).strip().lower())
    if not match:
        raise AnsibleFilterError(
            "%r is not a lifetime: use seconds, or a number with s, m, h or d (such as 14d)" % text
        )
    return int(match.group(1)) * UNITS[match.group(2)]


def credential_renewal(shown, wish, operator, renew_before):
    if shown.get("rc") != 0:
        stderr = (shown.get("stderr") or "").strip().replace("homelab-p2p: ", "")
        return "none yet" if "No such file" in stderr else "unreadable: " + stderr
    held = json.loads(shown["stdout"])
    for field, wanted in sorted(wish.items()):
        value = held.get(field)
        if field == "signaling_token":
            # Issued before signaling's secret was known: a new one carries a token.
            if wanted and not value:
                return "it has no signaling token"
        elif isinstance(wanted, list):
            if sorted(set(value or [])) != sorted(set(wanted)):
                return "its %s are %s (declared: %s)" % (
                    field,
                    ", ".join(value or []) or "none",
                    ", ".join(wanted),
                )
        elif value != wanted:
            return "its %s is %s (declared: %s)" % (field, value, wanted)
    if held.get("operator") != operator:
        return "issued under another operator key"
    if held["expires_at"] <= time.time() + ttl_seconds(renew_before):
        return "expires within %s" % renew_before
    return ""


class FilterModule:
    def filters(self):
        return {"credential_renewal": credential_renewal, "ttl_seconds": ttl_seconds}
