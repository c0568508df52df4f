"""Token spellings of raw bytes: GPT-2's printable byte alphabet (``Ġ`` = space) for byte-level BPE, and
SentencePiece's ``<0xNN>`` byte tokens.

>>> bytes_to_token_string(b" the"), byte_token(10), byte_of_token("<0x0A>")
('Ġthe', '<0x0A>', 10)
"""

from __future__ import annotations

from functools import lru_cache

import regex


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, so tokens can be stored as JSON strings.

    Printable Latin-1 bytes map to themselves; the others (controls, space, ...) to code points from 256 up.

    >>> b2u = bytes_to_unicode(); b2u[ord("a")], b2u[ord(" ")], b2u[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """Inverse of ``bytes_to_unicode``: ``unicode_to_bytes()["Ġ"] == 32``."""
    return {c: b for b, c in bytes_to_unicode().items()}


def bytes_to_token_string(data: bytes) -> str:
    """``b" the"`` → ``"Ġthe"`` (the GPT-2 ``vocab.json`` spelling of a token)."""
    b2u = bytes_to_unicode()
    return "".join(b2u[b] for b in data)


def token_string_to_bytes(token: str) -> bytes:
    """``"Ġthe"`` → ``b" the"``; a character outside the byte alphabet raises KeyError."""
    u2b = unicode_to_bytes()
    return bytes(u2b[c] for c in token)


def byte_token(b: int) -> str:
    """SentencePiece's spelling of a raw byte token: ``byte_token(10) == "<0x0A>"``."""
    return f"<0x{b:02X}>"


def byte_of_token(token: str) -> int | None:
    """The byte a ``<0xNN>`` token stands for, parsed as HF does (a 6-byte token, hex digits, a ``+`` sign
    allowed), else None.

    >>> byte_of_token("<0x0A>"), byte_of_token("<0xa>"), byte_of_token("a")
    (10, None, None)
    """
    m = _BYTE_TOKEN.fullmatch(token)
    return int(m.group(1), 16) if m else None


_BYTE_TOKEN = regex.compile(r"<0x([0-9A-Fa-f]{2}|\+[0-9A-Fa-f])>")
