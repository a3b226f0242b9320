"""Unpadded base64url, decoded strictly: the one spelling ``encode`` writes for given bytes.

Tokens and certificates are signed over their text, so a decoder that let an altered
character through (lenient decoders ignore the unused low bits of the last one) would let
two spellings of one payload pass.
"""

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


class B64Error(ValueError):
    """Text that is not canonical base64url; str() names the part that is wrong."""


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str, what: str, length: int | None = None) -> bytes:
    """The bytes ``text`` spells; B64Error says what is wrong with ``what`` otherwise.

    ``length`` is the number of characters the text must have, when it is known.
    """
    if not _ALPHABET.fullmatch(text):
        raise B64Error(f"{what} is not base64url (only A-Z, a-z, 0-9, '-' and '_' may appear)")
    if length is not None and len(text) != length:
        raise B64Error(f"{what} is {len(text)} characters long, not {length}")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise B64Error(f"{what} has a length no base64url text has") from None
    if encode(raw) != text:
        raise B64Error(f"{what} is not canonical base64url (it was altered)")
    return raw
