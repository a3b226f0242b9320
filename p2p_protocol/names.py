"""Names: a homelab's registered name, a service's channel label, log levels, and how the logs
refer to a homelab's connection id."""

import re

DEFAULT_NAME = "laptop"
"""The name the original system's homelab answered to; clients target it by default."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = (
    "1 to 64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
)


ECHO_LABEL = "echo"
"""The data channel label of the echo service every daemon answers (the client's probe)."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
"""The log levels every process of the project accepts (config, flags, LOG_LEVEL)."""


def is_valid_name(value: object) -> bool:
    """True for a string that may be registered as a homelab name."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def is_valid_label(value: object) -> bool:
    """True for a string that may name a service's data channel (the same rule as names)."""
    return is_valid_name(value)


def id_label(name: str) -> str:
    """How log lines call the connection id registered for ``name``.

    The original system kept the homelab's connection id in the variable LAPTOP_ID and
    its troubleshooting guide greps for that word, so ``laptop`` is ``LAPTOP_ID`` and
    any other name follows the same pattern (``nas`` is ``NAS_ID``).
    """
    return f"{name.upper()}_ID"
