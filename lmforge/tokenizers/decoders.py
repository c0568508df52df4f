"""Decoders: ids' token strings back to text, as the ``decoder`` of a HF ``tokenizer.json`` says.

Each decoder is a small class with ``decode_chain(tokens) -> tokens`` (HF's step: a ``Sequence`` runs its steps one
after the other, the result is joined with ""), ``token_bytes(token)`` (what one token stands for on its own, for
streaming), and ``from_hf`` / ``to_hf`` (a decoder read from a file is written back unchanged).

>>> decoder_from_hf({"type": "Sequence", "decoders": [{"type": "ByteFallback"},
...     {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}, {"type": "Fuse"}]}, "f").decode(
...     ["▁hi", "<0x21>", "▁x"])
'hi! x'
"""

from __future__ import annotations

import regex

from lmforge.errors import FormatError
from lmforge.tokenizers.alphabet import byte_of_token, unicode_to_bytes

SENTENCEPIECE_DECODERS = ("Metaspace", "Replace", "ByteFallback", "Fuse", "Strip")


class Decoder:
    """A decoding step. ``raw``: the ``tokenizer.json`` object it was read from, written back as is."""

    raw: dict | None = None

    def decode_chain(self, tokens: list[str]) -> list[str]:
        raise NotImplementedError

    def decode(self, tokens: list[str]) -> str:
        return "".join(self.decode_chain(tokens))

    def space_marker(self) -> str | None:
        """The character this decoder turns into a space (SentencePiece's ``▁``), or None."""
        return None

    def token_bytes(self, token: str) -> bytes:
        """The bytes one token stands for on its own: a ``<0xNN>`` byte token is that byte, the space marker a
        space, anything else its UTF-8."""
        b = byte_of_token(token)
        if b is not None:
            return bytes([b])
        marker = self.space_marker()
        return (token.replace(marker, " ") if marker else token).encode("utf-8")

    def to_hf(self) -> dict:
        return self.raw if self.raw is not None else self.spelled()

    def spelled(self) -> dict:
        raise NotImplementedError


class NoDecoder(Decoder):
    """No decoder in the file: HF joins the tokens with spaces."""

    def decode_chain(self, tokens):
        return [" ".join(tokens)]


class ByteLevelDecoder(Decoder):
    """GPT-2's byte alphabet back to bytes (a token with a char outside the alphabet stands for its UTF-8, as in
    HF), the bytes decoded as UTF-8 with U+FFFD for invalid sequences.

    >>> ByteLevelDecoder().decode(["Hello", "Ġw", "orld"])
    'Hello world'
    """

    def __init__(self):
        self.memo: dict[str, bytes] = {}  # token → bytes (a vocabulary's worth at most)

    def decode_chain(self, tokens):
        memo = self.memo
        return [b"".join([memo.get(t) or self.token_bytes(t) for t in tokens]).decode("utf-8", errors="replace")]

    def token_bytes(self, token):
        b = self.memo.get(token)
        if b is None:
            table = unicode_to_bytes()
            try:
                b = bytes([table[c] for c in token])
            except KeyError:
                b = token.encode("utf-8")
            self.memo[token] = b
        return b

    def spelled(self):
        return {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


class WordPieceDecoder(Decoder):
    """HF's WordPiece decoder (``decode_wordpiece``)."""

    def __init__(self, prefix: str = "##", cleanup: bool = True):
        self.prefix, self.cleanup = prefix, cleanup

    def decode_chain(self, tokens):
        return [decode_wordpiece(tokens, self.prefix, self.cleanup)]

    def token_bytes(self, token):
        if self.prefix and token.startswith(self.prefix):
            return token[len(self.prefix):].encode("utf-8")
        return token.encode("utf-8")

    def spelled(self):
        return {"type": "WordPiece", "prefix": self.prefix, "cleanup": self.cleanup}


class ByteFallback(Decoder):
    """Runs of ``<0xNN>`` tokens become their UTF-8 text, or one U+FFFD per byte where that is invalid."""

    def decode_chain(self, tokens):
        out: list[str] = []
        run: list[int] = []
        for tok in [*tokens, None]:
            b = byte_of_token(tok) if tok is not None else None
            if b is not None:
                run.append(b)
                continue
            if run:
                try:
                    out.append(bytes(run).decode("utf-8"))
                except UnicodeDecodeError:
                    out.extend(["\ufffd"] * len(run))
                run = []
            if tok is not None:
                out.append(tok)
        return out

    def spelled(self):
        return {"type": "ByteFallback"}


class Fuse(Decoder):
    def decode_chain(self, tokens):
        return ["".join(tokens)]

    def spelled(self):
        return {"type": "Fuse"}


class Replace(Decoder):
    """A literal string or a regex replaced by ``content`` in every token."""

    def __init__(self, pattern: dict, content: str):
        self.pattern, self.content = pattern, content
        self.regex = regex.compile(regex.escape(pattern["String"]) if "String" in pattern else pattern["Regex"])

    def decode_chain(self, tokens):
        return [self.regex.sub(lambda _: self.content, t) for t in tokens]

    def space_marker(self):
        return self.pattern["String"] if self.content == " " and "String" in self.pattern else None

    def spelled(self):
        return {"type": "Replace", "pattern": self.pattern, "content": self.content}


class Strip(Decoder):
    """Up to ``start`` leading and ``stop`` trailing ``content`` chars off every token."""

    def __init__(self, content: str = " ", start: int = 0, stop: int = 0):
        self.content, self.start, self.stop = content, start, stop

    def decode_chain(self, tokens):
        c, start, stop = self.content, self.start, self.stop
        out = []
        for t in tokens:
            lead = len(t[:start]) - len(t[:start].lstrip(c))
            tail = len(t[len(t) - stop:] if stop else "") - len((t[len(t) - stop:] if stop else "").rstrip(c))
            out.append(t[lead:len(t) - tail] if lead < len(t) - tail else "")
        return out

    def spelled(self):
        return {"type": "Strip", "content": self.content, "start": self.start, "stop": self.stop}


class Metaspace(Decoder):
    """``replacement`` → space; the first token loses its replacement chars (the prefix the pre-tokenizer added)."""

    def __init__(self, replacement: str = "▁", prepend_scheme: str = "always"):
        self.replacement, self.prepend_scheme = replacement, prepend_scheme

    def decode_chain(self, tokens):
        r, scheme = self.replacement, self.prepend_scheme
        return [t.replace(r, "" if k == 0 and scheme != "never" else " ") for k, t in enumerate(tokens)]

    def space_marker(self):
        return self.replacement

    def spelled(self):
        return {"type": "Metaspace", "replacement": self.replacement, "prepend_scheme": self.prepend_scheme,
                "split": True}


class DecoderSequence(Decoder):
    def __init__(self, steps: list[Decoder]):
        self.steps = steps

    def decode_chain(self, tokens):
        for step in self.steps:
            tokens = step.decode_chain(tokens)
        return tokens

    def space_marker(self):
        return next((m for m in (s.space_marker() for s in self.steps) if m is not None), None)

    def token_bytes(self, token):
        whole = [s for s in self.steps if isinstance(s, ByteLevelDecoder | WordPieceDecoder)]
        return whole[0].token_bytes(token) if whole else super().token_bytes(token)

    def spelled(self):
        return {"type": "Sequence", "decoders": [s.to_hf() for s in self.steps]}


def decoder_from_hf(obj: dict | None, where: str) -> Decoder | None:
    """A ``tokenizer.json`` ``decoder`` object as a ``Decoder`` (None for none); unsupported types raise
    ``FormatError`` naming ``where``."""
    if obj is None:
        return None
    kind = obj.get("type")
    if kind == "Sequence":
        decoder: Decoder = DecoderSequence([decoder_from_hf(o, where) for o in obj.get("decoders", [])])
    elif kind == "ByteLevel":
        decoder = ByteLevelDecoder()
    elif kind == "WordPiece":
        decoder = WordPieceDecoder(obj.get("prefix", "##"), obj.get("cleanup", True))
    elif kind == "Replace":
        if not ("String" in obj.get("pattern", {}) or "Regex" in obj.get("pattern", {})):
            raise FormatError(f"{where}: decoder Replace: pattern needs 'String' or 'Regex', got "
                              f"{obj.get('pattern')!r}")
        decoder = Replace(obj["pattern"], obj["content"])
    elif kind == "ByteFallback":
        decoder = ByteFallback()
    elif kind == "Fuse":
        decoder = Fuse()
    elif kind == "Strip":
        decoder = Strip(obj.get("content", " "), int(obj.get("start", 0)), int(obj.get("stop", 0)))
    elif kind == "Metaspace":
        scheme = obj.get("prepend_scheme") or ("always" if obj.get("add_prefix_space", True) else "never")
        decoder = Metaspace(obj.get("replacement", obj.get("str_rep", "▁")), scheme)
    else:
        raise FormatError(f"{where}: decoder type {kind!r} is not supported (supported: ByteLevel, WordPiece, "
                          f"{', '.join(SENTENCEPIECE_DECODERS)}, Sequence)")
    decoder.raw = obj
    return decoder


def decoder_types(decoder: Decoder | None) -> list[str]:
    """The HF type of every step, sequences flattened.

    >>> decoder_types(decoder_from_hf({"type": "Sequence", "decoders": [{"type": "Fuse"}]}, "f"))
    ['Fuse']
    """
    if decoder is None:
        return []
    if isinstance(decoder, DecoderSequence):
        return [t for s in decoder.steps for t in decoder_types(s)]
    return [decoder.to_hf().get("type")]


def decode_wordpiece(tokens: list[str], continuing_subword_prefix: str = "##", cleanup: bool = True) -> str:
    """HF's WordPiece decoder: join with spaces, glue ``##`` pieces to the previous one, tidy punctuation.

    >>> decode_wordpiece(["hello", "wo", "##rld", ",", "it", "'", "s", "fine", "."])
    "hello world, it ' s fine."
    """
    out: list[str] = []
    for i, token in enumerate(tokens):
        if i:
            if continuing_subword_prefix and token.startswith(continuing_subword_prefix):
                token = token[len(continuing_subword_prefix):]
            else:
                token = " " + token
        if cleanup:
            token = _cleanup(token)
        out.append(token)
    return "".join(out)


# HF's cleanup table, applied to each token after its leading space is added (so ' .' → '.', " 's" → "'s").
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _cleanup(token: str) -> str:
    """Apply the cleanup table to one token.

    >>> _cleanup(" ,"), _cleanup(" 's"), _cleanup(" x")
    (',', "'s", ' x')
    """
    for old, new in _CLEANUP:
        token = token.replace(old, new)
    return token
