"""Names a homelab registers under, and how the logs refer to them."""

import re

DEFAULT_NAME = "laptop"
"""The name the original system's homelab answered to; clients target it by default."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = (
    "1 to 64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
)


def is_valid_name(value: object) -> bool:
    """True for a string that may be registered as a homelab name."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def id_label(name: str) -> str:
    """How log lines call the connection id registered for ``name``.

    The original system kept the homelab's connection id in the variable LAPTOP_ID and
    its troubleshooting guide greps for that word, so ``laptop`` is ``LAPTOP_ID`` and
    any other name follows the same pattern (``nas`` is ``NAS_ID``).
    """
    return f"{name.upper()}_ID"
