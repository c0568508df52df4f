"""The stages around a subword model, as in Hugging Face ``tokenizer.json``: normalizer → pre-tokenizer →
model → post-processor, and a decoder on the way back. Plus added (special) tokens, matched in raw text first.

Each stage is a small class that knows its ``tokenizer.json`` spelling (``to_hf()``); ``from_hf_*`` parse them
and raise ``FormatError`` naming any component lmforge does not implement. Offsets are char spans into the
text the stage received; normalizers carry an alignment (normalized char → original char) so that token
offsets point into the user's original string.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import regex

from lmforge.errors import FormatError
from lmforge.tokenizers import bert_normalizer
from lmforge.tokenizers.bpe import GPT2_PATTERN

Span = tuple[str, int, int]  # (piece, start, end)


# ----------------------------------------------------------------------------------------------- normalizers
class Normalizer:
    """Maps ``(text, align)`` to ``(new_text, new_align)``; ``align[i]`` is the original index of char i
    (``None`` means identity, the common no-change case)."""

    def __call__(self, text: str, align: list[int] | None) -> tuple[str, list[int] | None]:
        raise NotImplementedError

    def to_hf(self) -> dict:
        raise NotImplementedError


def _identity(n: int) -> list[int]:
    return list(range(n))


def _per_char(text: str, align: list[int] | None, fn) -> tuple[str, list[int] | None]:
    """Apply a char → str map, keeping the alignment.

    >>> _per_char("Ab", None, str.lower)
    ('ab', None)
    """
    out, new_align = [], []
    src = align if align is not None else _identity(len(text))
    changed_len = False
    for c, a in zip(text, src, strict=True):
        r = fn(c)
        out.append(r)
        if len(r) != 1:
            changed_len = True
        new_align.extend([a] * len(r))
    new = "".join(out)
    if not changed_len and align is None:
        return new, None
    return new, new_align


class UnicodeNormalizer(Normalizer):
    """NFC / NFD / NFKC / NFKD. The text is normalized as a whole (exact); the alignment is HF's: each char of the
    result is traced to the char it came from (``_traced_normalize``), falling back to runs that start at a
    combining-class-0 character where that tracing does not rebuild Python's result.

    >>> UnicodeNormalizer("NFKC")("\ufb01\u0301", None)  # ﬁ + acute: f from ﬁ, í from the acute's place
    ('fí', [0, 1])
    """

    def __init__(self, form: str):
        self.form = form

    def __call__(self, text, align):
        new = unicodedata.normalize(self.form, text)
        if new == text:
            return text, align
        src = align if align is not None else _identity(len(text))
        traced = _traced_normalize(text, self.form)
        if traced is not None and "".join(c for c, _ in traced) == new:
            new_align, k, last = [], 0, len(src) - 1
            for _, change in traced:
                if change > 0:  # an inserted char: the place of the last char of the text used so far
                    new_align.append(src[min(max(k - 1, 0), last)])
                else:  # a char in place of the next 1 - change chars of the text: the first one's place
                    new_align.append(src[min(k, last)])
                    k += 1 - change
            return new, new_align
        pieces, starts = [], []
        for i, c in enumerate(text):
            if i == 0 or unicodedata.combining(c) == 0:
                starts.append(i)
        starts.append(len(text))
        new_align: list[int] = []
        for s, e in zip(starts, starts[1:], strict=False):
            run = unicodedata.normalize(self.form, text[s:e])
            pieces.append(run)
            new_align.extend([src[s]] * len(run))
        if len(new_align) != len(new):  # runs composed across boundaries: fall back to proportional
            new_align = [src[min(len(src) - 1, i * len(src) // max(1, len(new)))] for i in range(len(new))]
        return new, new_align

    def to_hf(self):
        return {"type": self.form}


def _traced_normalize(text: str, form: str) -> list[tuple[str, int]] | None:
    """``form`` applied step by step as Unicode defines it (decompose each char, order marks, compose), each
    result char with HF's *change*: 0 for a char in place of one char of ``text``, +1 for an extra char of a
    decomposition, -n for a char that absorbed n more. None where the steps do not compose (a safety net).

    >>> _traced_normalize("\ufb01\u0301", "NFKC")
    [('f', 0), ('í', 0)]
    """
    combining = unicodedata.combining
    items = [[ch, 1 if k else 0] for c in text
             for k, ch in enumerate(unicodedata.normalize("NFKD" if form in ("NFKC", "NFKD") else "NFD", c))]
    i = 0
    while i < len(items):  # canonical ordering: each run of marks stably sorted by combining class
        j = i
        while j < len(items) and combining(items[j][0]):
            j += 1
        if j > i + 1:
            items[i:j] = sorted(items[i:j], key=lambda item: combining(item[0]))
        i = j + 1 if j == i else j
    if form in ("NFD", "NFKD"):
        return [(c, n) for c, n in items]
    out: list[list] = []
    starter, last = None, None  # index in out of the last starter; combining class of the last char after it
    for ch, change in items:
        ccc = combining(ch)
        if starter is not None and (last is None or last < ccc):  # not blocked from the starter
            both = unicodedata.normalize("NFC", out[starter][0] + ch)
            if len(both) == 1:
                out[starter] = [both, out[starter][1] + change - 1]
                continue
        if ccc == 0:
            starter, last = len(out), None
        else:
            last = ccc
        out.append([ch, change])
    return [(c, n) for c, n in out]


class Lowercase(Normalizer):
    """Per-character lower-casing (no Greek final-sigma rule, as HF)."""

    def __call__(self, text, align):
        if "Σ" not in text:
            low = text.lower()
            if len(low) == len(text):
                return low, align
        return _per_char(text, align, str.lower)

    def to_hf(self):
        return {"type": "Lowercase"}


class StripAccents(Normalizer):
    """Removes non-spacing marks (category Mn); combine with NFD to strip accents off letters."""

    def __call__(self, text, align):
        return _per_char(text, align, lambda c: "" if unicodedata.category(c) == "Mn" else c)

    def to_hf(self):
        return {"type": "StripAccents"}


class Replace(Normalizer):
    """Replace a literal string or a regex by ``content``."""

    def __init__(self, pattern: dict, content: str):
        self.pattern = pattern
        if "String" in pattern:
            self.regex = regex.compile(regex.escape(pattern["String"]))
        elif "Regex" in pattern:
            self.regex = regex.compile(pattern["Regex"])
        else:
            raise FormatError(f"Replace normalizer: pattern needs 'String' or 'Regex', got {pattern}")
        self.content = content

    def __call__(self, text, align):
        src = align if align is not None else _identity(len(text))
        out, new_align, pos = [], [], 0
        for m in self.regex.finditer(text):
            s, e = m.span()
            out.append(text[pos:s])
            new_align.extend(src[pos:s])
            out.append(self.content)
            # as HF: the match is removed, then the new chars are inserted after its last char, sharing its span
            anchor = src[e - 1] if e > 0 else 0
            new_align.extend([anchor] * len(self.content))
            pos = e
        if pos == 0 and not out:
            return text, align
        out.append(text[pos:])
        new_align.extend(src[pos:])
        return "".join(out), new_align

    def to_hf(self):
        return {"type": "Replace", "pattern": self.pattern, "content": self.content}


class Prepend(Normalizer):
    def __init__(self, prepend: str):
        self.prepend = prepend

    def __call__(self, text, align):
        if not text:
            return text, align
        src = align if align is not None else _identity(len(text))
        return self.prepend + text, [src[0]] * len(self.prepend) + src

    def to_hf(self):
        return {"type": "Prepend", "prepend": self.prepend}


# SentencePiece's nmt_nfkc clean-up (HF's Nmt normalizer): control characters dropped, odd spaces made plain
_NMT_DROP = {*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x8F, 0x9F}
_NMT_SPACE = {0x09, 0x0A, 0x0C, 0x0D, 0x1680, *range(0x200B, 0x2010), 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD}
_NMT_TABLE = {**{c: "" for c in _NMT_DROP}, **{c: " " for c in _NMT_SPACE}}


class Nmt(Normalizer):
    """SentencePiece's ``nmt_nfkc`` clean-up before NFKC: drop control characters, turn tabs, newlines, zero-width
    and other odd spaces (and ``▁`` itself) into a plain space.

    >>> Nmt()("a" + chr(9) + "b" + chr(7) + "c", None)
    ('a bc', [0, 1, 2, 4])
    """

    def __call__(self, text, align):
        if not any(ord(c) in _NMT_TABLE for c in text):
            return text, align
        return _per_char(text, align, lambda c: _NMT_TABLE.get(ord(c), c))

    def to_hf(self):
        return {"type": "Nmt"}


_WHITE_SPACE = regex.compile(r"\p{White_Space}")  # Rust's char::is_whitespace (Python's isspace has 4 more)


class Strip(Normalizer):
    """Remove white space at the start and/or the end.

    >>> Strip()("  a b ", None)
    ('a b', [2, 3, 4])
    """

    def __init__(self, left: bool = True, right: bool = True):
        self.left, self.right = left, right

    def __call__(self, text, align):
        s, e = 0, len(text)
        while self.left and s < e and _WHITE_SPACE.match(text[s]):
            s += 1
        while self.right and e > s and _WHITE_SPACE.match(text[e - 1]):
            e -= 1
        if (s, e) == (0, len(text)):
            return text, align
        src = align if align is not None else _identity(len(text))
        return text[s:e], src[s:e]

    def to_hf(self):
        return {"type": "Strip", "strip_left": self.left, "strip_right": self.right}


class NormalizerSequence(Normalizer):
    def __init__(self, steps: list[Normalizer]):
        self.steps = steps

    def __call__(self, text, align):
        for step in self.steps:
            text, align = step(text, align)
        return text, align

    def to_hf(self):
        return {"type": "Sequence", "normalizers": [s.to_hf() for s in self.steps]}


@dataclass
class BertNormalizer(Normalizer):
    """BERT's cleaning, CJK padding, accent stripping and lower-casing. lmforge runs it fused with
    ``BertPreTokenizer`` (``wordpiece.basic_tokenize``), which is how BERT tokenizers use it."""

    clean_text: bool = True
    handle_chinese_chars: bool = True
    strip_accents: bool | None = None
    lowercase: bool = True

    def __call__(self, text, align):  # pragma: no cover - always fused, see Tokenizer
        raise FormatError("BertNormalizer is only supported together with BertPreTokenizer")

    def to_hf(self):
        return {"type": "BertNormalizer", "clean_text": self.clean_text,
                "handle_chinese_chars": self.handle_chinese_chars, "strip_accents": self.strip_accents,
                "lowercase": self.lowercase}


def normalizer_from_hf(obj: dict | None, where: str) -> Normalizer | None:
    if obj is None:
        return None
    kind = obj.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return UnicodeNormalizer(kind)
    if kind == "Lowercase":
        return Lowercase()
    if kind == "StripAccents":
        return StripAccents()
    if kind == "Replace":
        return Replace(obj["pattern"], obj["content"])
    if kind == "Prepend":
        return Prepend(obj["prepend"])
    if kind == "Nmt":
        return Nmt()
    if kind == "Strip":
        return Strip(bool(obj.get("strip_left", True)), bool(obj.get("strip_right", True)))
    if kind == "Sequence":
        return NormalizerSequence([normalizer_from_hf(o, where) for o in obj.get("normalizers", [])])
    if kind == "Precompiled":
        raise FormatError(f"{where}: normalizer type 'Precompiled' (SentencePiece's compiled character map, as in "
                          "T5/ALBERT files) is not supported; remove it from 'normalizer' to tokenize without it "
                          "(NFKC is its usual approximation)")
    if kind == "BertNormalizer":
        return BertNormalizer(obj.get("clean_text", True), obj.get("handle_chinese_chars", True),
                              obj.get("strip_accents"), obj.get("lowercase", True))
    raise FormatError(f"{where}: normalizer type {kind!r} is not supported (supported: NFC, NFD, NFKC, NFKD, "
                      "Lowercase, StripAccents, BertNormalizer, Prepend, Replace, Strip, Nmt, Sequence)")


# ------------------------------------------------------------------------------------------ pre-tokenizers
class PreTokenizer:
    """Splits text into pieces; ``split`` gives ``(piece, start, end)``, ``split_strings`` only the pieces.

    ``position_dependent``: the split depends on whether the text starts the user's text (Metaspace's
    ``prepend_scheme="first"``); ``split_at`` / ``split_strings`` are told that with ``at_start``.
    """

    position_dependent = False

    def split(self, text: str) -> list[Span]:
        raise NotImplementedError

    def split_strings(self, text: str, at_start: bool = True) -> list[str]:
        return [p for p, _, _ in self.split_at(text, at_start)]

    def split_at(self, text: str, at_start: bool) -> list[Span]:
        """``split``, told whether ``text`` starts the user's text (Metaspace's ``prepend_scheme="first"``)."""
        return self.split(text)

    def split_aligned(self, text: str, at_start: bool) -> list[tuple[str, int, int, list[int] | None]]:
        """``split_at`` plus, for a pre-tokenizer that also normalises (BERT's), the index in ``text`` of each
        char of the piece; None where the piece's chars are ``text[start:end]`` (or a prefix was added)."""
        return [(p, s, e, None) for p, s, e in self.split_at(text, at_start)]

    def to_hf(self) -> dict:
        raise NotImplementedError


class Metaspace(PreTokenizer):
    """SentencePiece's view of spaces: every space becomes ``replacement`` (``▁``), which is prepended to the
    text (``prepend_scheme``: ``always``; ``first``: only where the text starts the input, not after a special
    token; ``never``) unless already there; with ``split`` each word starts a piece (the ``▁`` stays on it).

    >>> Metaspace().split("Hi  you")
    [('▁Hi', 0, 2), ('▁', 2, 3), ('▁you', 3, 7)]
    """

    def __init__(self, replacement: str = "▁", prepend_scheme: str = "always", split: bool = True):
        if prepend_scheme not in ("always", "first", "never"):
            raise FormatError(f"Metaspace pre-tokenizer: prepend_scheme should be 'always', 'first' or 'never', "
                              f"got {prepend_scheme!r}")
        if len(replacement) != 1:
            raise FormatError(f"Metaspace pre-tokenizer: replacement should be one character, got {replacement!r}")
        self.replacement, self.prepend_scheme, self.split_words = replacement, prepend_scheme, split
        self.position_dependent = prepend_scheme == "first"

    def split(self, text):
        return self.split_at(text, True)

    def split_at(self, text, at_start):
        if not text:
            return []
        r = self.replacement
        spaced = text.replace(" ", r)
        shift = 0  # 1 when a replacement char was prepended: it shares the span of the first real char
        if (self.prepend_scheme == "always" or (self.prepend_scheme == "first" and at_start)) \
                and not spaced.startswith(r):
            spaced, shift = r + spaced, 1
        if not self.split_words:
            return [(spaced, 0, len(text))]
        starts = [k for k, c in enumerate(spaced) if c == r and k > 0] + [len(spaced)]
        out, prev = [], 0
        for k in starts:  # each replacement char starts a new piece (HF's MergedWithNext)
            out.append((spaced[prev:k], max(0, prev - shift), k - shift))
            prev = k
        return out

    def to_hf(self):
        return {"type": "Metaspace", "replacement": self.replacement, "prepend_scheme": self.prepend_scheme,
                "split": self.split_words}


class ByteLevel(PreTokenizer):
    """GPT-2's pre-tokenizer: optional prefix space, then the regex split (``use_regex``). The byte → char
    mapping itself lives in the BPE model, which works on UTF-8 bytes."""

    def __init__(self, add_prefix_space: bool = False, trim_offsets: bool = True, use_regex: bool = True,
                 pattern: str = GPT2_PATTERN):
        self.add_prefix_space = add_prefix_space
        self.trim_offsets = trim_offsets
        self.use_regex = use_regex
        self.pattern = pattern
        self.regex = regex.compile(pattern)

    def split(self, text):
        shift = 0
        if self.add_prefix_space and not text.startswith(" "):
            text, shift = " " + text, 1
        if not self.use_regex:
            return [(text, 0, len(text) - shift)] if text else []
        return [(m.group(), max(0, m.start() - shift), m.end() - shift) for m in self.regex.finditer(text)]

    def split_strings(self, text, at_start=True):
        if self.add_prefix_space and not text.startswith(" "):
            text = " " + text
        if not self.use_regex:
            return [text] if text else []
        return self.regex.findall(text)

    def to_hf(self):
        spelled = {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space,
                   "trim_offsets": self.trim_offsets, "use_regex": self.use_regex}
        if self.use_regex and self.pattern != GPT2_PATTERN:
            # HF's ByteLevel only knows GPT-2's regex: other patterns are a Split before it (as Llama 3 does).
            split = {"type": "Split", "pattern": {"Regex": self.pattern}, "behavior": "Isolated", "invert": False}
            return {"type": "Sequence", "pretokenizers": [split, {**spelled, "use_regex": False}]}
        return spelled


def _spans_by_matches(text: str, rx, invert: bool = False) -> list[tuple[int, int, bool]]:
    """Cut text into alternating (start, end, is_match) spans.

    >>> _spans_by_matches("a1b", regex.compile(r"\\d"))
    [(0, 1, False), (1, 2, True), (2, 3, False)]
    """
    spans, pos = [], 0
    for m in rx.finditer(text):
        s, e = m.span()
        if s == e:
            continue
        if pos < s:
            spans.append((pos, s, invert))
        spans.append((s, e, not invert))
        pos = e
    if pos < len(text):
        spans.append((pos, len(text), invert))
    return spans


def _apply_behavior(spans: list[tuple[int, int, bool]], behavior: str) -> list[tuple[int, int]]:
    """What to do with the delimiters (matches): HF's SplitDelimiterBehavior.

    >>> _apply_behavior([(0, 1, False), (1, 2, True), (2, 3, False)], "MergedWithPrevious")
    [(0, 2), (2, 3)]
    """
    out: list[list[int]] = []
    if behavior == "Removed":
        return [(s, e) for s, e, m in spans if not m]
    if behavior == "Isolated":
        return [(s, e) for s, e, _ in spans]
    if behavior == "Contiguous":
        prev = None
        for s, e, m in spans:
            if out and m == prev:
                out[-1][1] = e
            else:
                out.append([s, e])
            prev = m
        return [tuple(x) for x in out]
    if behavior == "MergedWithPrevious":
        prev = False
        for s, e, m in spans:
            if m and not prev and out:
                out[-1][1] = e
            else:
                out.append([s, e])
            prev = m
        return [tuple(x) for x in out]
    if behavior == "MergedWithNext":
        prev = False
        for s, e, m in reversed(spans):
            if m and not prev and out:
                out[-1][0] = s
            else:
                out.append([s, e])
            prev = m
        return [tuple(x) for x in reversed(out)]
    raise FormatError(f"Split pre-tokenizer: unknown behavior {behavior!r}")


class Split(PreTokenizer):
    def __init__(self, pattern: dict, behavior: str = "Isolated", invert: bool = False):
        self.pattern, self.behavior, self.invert = pattern, behavior, invert
        if "Regex" in pattern:
            self.regex = regex.compile(pattern["Regex"])
        elif "String" in pattern:
            self.regex = regex.compile(regex.escape(pattern["String"]))
        else:
            raise FormatError(f"Split pre-tokenizer: pattern needs 'String' or 'Regex', got {pattern}")

    def split(self, text):
        spans = _apply_behavior(_spans_by_matches(text, self.regex, self.invert), self.behavior)
        return [(text[s:e], s, e) for s, e in spans]

    def to_hf(self):
        return {"type": "Split", "pattern": self.pattern, "behavior": self.behavior, "invert": self.invert}


class Digits(PreTokenizer):
    def __init__(self, individual_digits: bool = False):
        self.individual_digits = individual_digits
        self.regex = regex.compile(r"\p{N}" if individual_digits else r"\p{N}+")

    def split(self, text):
        return [(text[s:e], s, e) for s, e, _ in _spans_by_matches(text, self.regex)]

    def to_hf(self):
        return {"type": "Digits", "individual_digits": self.individual_digits}


class Whitespace(PreTokenizer):
    """Word characters runs and punctuation runs; whitespace dropped."""

    rx = regex.compile(r"\w+|[^\w\s]+")

    def split(self, text):
        return [(m.group(), m.start(), m.end()) for m in self.rx.finditer(text)]

    def split_strings(self, text, at_start=True):
        return self.rx.findall(text)

    def to_hf(self):
        return {"type": "Whitespace"}


class WhitespaceSplit(PreTokenizer):
    rx = regex.compile(r"\S+")

    def split(self, text):
        return [(m.group(), m.start(), m.end()) for m in self.rx.finditer(text)]

    def split_strings(self, text, at_start=True):
        return text.split()

    def to_hf(self):
        return {"type": "WhitespaceSplit"}


@dataclass
class BertPreTokenizer(PreTokenizer):
    """Whitespace split + punctuation isolated; with a ``BertNormalizer`` it runs fused (BERT's basic tokenizer,
    ``bert_normalizer``), so its words are normalised and map back to the text char by char.

    >>> BertPreTokenizer(BertNormalizer()).split("Héllo, WORLD")
    [('hello', 0, 5), (',', 5, 6), ('world', 7, 12)]
    """

    normalizer: BertNormalizer | None = None

    def __post_init__(self):
        n = self.normalizer
        if n is None:
            self.options = {"lowercase": False, "strip_accents": False, "tokenize_chinese_chars": False,
                            "clean_text": False}
        else:
            self.options = {"lowercase": n.lowercase, "strip_accents": n.strip_accents,
                            "tokenize_chinese_chars": n.handle_chinese_chars, "clean_text": n.clean_text}

    def split(self, text):
        return bert_normalizer.basic_tokenize(text, **self.options)

    def split_strings(self, text, at_start=True):
        return bert_normalizer.basic_words(text, **self.options)

    def words(self, text: str) -> list[tuple[str, int, list[int] | None]]:
        """``(word, first, positions)``: ``positions`` (each char's index in ``text``) is None when the word is
        ``text[first:first + len(word)]`` char for char."""
        o = self.options
        return bert_normalizer.normalised_words(text, o["lowercase"], o["strip_accents"], o["tokenize_chinese_chars"],
                                                o["clean_text"])

    def split_aligned(self, text, at_start):
        return [(w, first, first + len(w) if pos is None else pos[-1] + 1, pos) for w, first, pos in self.words(text)]

    def to_hf(self):
        return {"type": "BertPreTokenizer"}


class PreTokenizerSequence(PreTokenizer):
    def __init__(self, steps: list[PreTokenizer]):
        self.steps = steps
        self.position_dependent = any(s.position_dependent for s in steps)

    def split(self, text):
        spans = [(text, 0, len(text))]
        for step in self.steps:
            spans = [(p, s + ps, s + pe) for piece, s, _ in spans for p, ps, pe in step.split(piece)]
        return spans

    def split_strings(self, text, at_start=True):
        if self.position_dependent and at_start:  # which piece starts the text needs the spans
            return [p for p, _, _ in self.split_at(text, at_start)]
        pieces = [text]
        for step in self.steps:
            pieces = [p for piece in pieces for p in step.split_strings(piece, False)]
        return pieces

    def split_at(self, text, at_start):
        spans = [(text, 0, len(text))]
        for step in self.steps:
            spans = [(p, s + ps, s + pe) for piece, s, _ in spans
                     for p, ps, pe in step.split_at(piece, at_start and s == 0)]
        return spans

    def to_hf(self):
        return {"type": "Sequence", "pretokenizers": [s.to_hf() for s in self.steps]}


def pre_tokenizer_from_hf(obj: dict | None, where: str) -> PreTokenizer | None:
    if obj is None:
        return None
    kind = obj.get("type")
    if kind == "ByteLevel":
        return ByteLevel(obj.get("add_prefix_space", True), obj.get("trim_offsets", True), obj.get("use_regex", True))
    if kind == "Split":
        return Split(obj["pattern"], obj.get("behavior", "Isolated"), obj.get("invert", False))
    if kind == "Digits":
        return Digits(obj.get("individual_digits", False))
    if kind == "Whitespace":
        return Whitespace()
    if kind == "WhitespaceSplit":
        return WhitespaceSplit()
    if kind == "BertPreTokenizer":
        return BertPreTokenizer()
    if kind == "Metaspace":
        # older files spell prepend_scheme as add_prefix_space (true: "always") and the char as str_rep
        scheme = obj.get("prepend_scheme") or ("always" if obj.get("add_prefix_space", True) else "never")
        return Metaspace(obj.get("replacement", obj.get("str_rep", "▁")), scheme, bool(obj.get("split", True)))
    if kind == "Sequence":
        return PreTokenizerSequence([pre_tokenizer_from_hf(o, where) for o in obj.get("pretokenizers", [])])
    raise FormatError(f"{where}: pre_tokenizer type {kind!r} is not supported (supported: ByteLevel, Split, "
                      "Digits, Whitespace, WhitespaceSplit, BertPreTokenizer, Metaspace, Sequence)")


def find_component(component, cls):
    """The first stage of type ``cls`` in a (possibly nested) sequence, or None."""
    if isinstance(component, cls):
        return component
    for step in getattr(component, "steps", []) or []:
        found = find_component(step, cls)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------------------------ post-processor
@dataclass
class Template:
    """Where special tokens go around one sequence (``single``) or a pair: items are ``"A"``, ``"B"`` or a
    special token string, each with a type id. ``special_ids`` maps those strings to their id lists.

    >>> Template([("[CLS]", 0), ("A", 0), ("[SEP]", 0)], [], {"[CLS]": [1], "[SEP]": [2]}).num_added(False)
    2
    """

    single: list[tuple[str, int]]
    pair: list[tuple[str, int]]
    special_ids: dict[str, list[int]]
    trim_offsets: bool = False  # ByteLevel/Roberta offset trimming
    raw: dict | None = None  # the tokenizer.json object it came from, written back unchanged

    def num_added(self, is_pair: bool) -> int:
        items = self.pair if is_pair else self.single
        return sum(len(self.special_ids[t]) for t, _ in items if t not in ("A", "B"))

    def apply(self, a: list, b: list | None, special_value) -> tuple[list, list[int]]:
        """Lay out ``a`` (and ``b``) with the specials; ``special_value(token, id)`` makes each special's entry.
        Returns (entries, type_ids)."""
        out, types = [], []
        for item, type_id in (self.pair if b is not None else self.single):
            if item == "A":
                seq = a
            elif item == "B":
                seq = b
            else:
                seq = [special_value(item, i) for i in self.special_ids[item]]
            out.extend(seq)
            types.extend([type_id] * len(seq))
        return out, types

    def to_hf(self) -> dict:
        if self.raw is not None:
            return self.raw

        def spell(items):
            return [{"Sequence": {"id": t, "type_id": ty}} if t in ("A", "B")
                    else {"SpecialToken": {"id": t, "type_id": ty}} for t, ty in items]

        return {"type": "TemplateProcessing", "single": spell(self.single), "pair": spell(self.pair),
                "special_tokens": {t: {"id": t, "ids": ids, "tokens": [t] * len(ids)}
                                   for t, ids in self.special_ids.items()}}


def _template_items(items: list, where: str) -> list[tuple[str, int]]:
    out = []
    for it in items:
        if isinstance(it, str):  # the short string form: "[CLS]", "$A", "$B:1"
            name, _, ty = it.partition(":")
            name = {"$A": "A", "$B": "B", "$": "A", "$0": "A", "$1": "B"}.get(name, name)
            out.append((name, int(ty or 0)))
        elif "Sequence" in it:
            out.append((it["Sequence"]["id"], int(it["Sequence"].get("type_id", 0))))
        elif "SpecialToken" in it:
            out.append((it["SpecialToken"]["id"], int(it["SpecialToken"].get("type_id", 0))))
        else:
            raise FormatError(f"{where}: TemplateProcessing item {it!r} not understood")
    return out


def post_processor_from_hf(obj: dict | None, where: str) -> Template | None:
    if obj is None:
        return None
    kind = obj.get("type")
    if kind == "TemplateProcessing":
        special = {k: list(v["ids"]) for k, v in obj.get("special_tokens", {}).items()}
        return Template(_template_items(obj["single"], where), _template_items(obj.get("pair", []), where),
                        special, raw=obj)
    if kind in ("BertProcessing", "RobertaProcessing"):
        (sep, sep_id), (cls, cls_id) = obj["sep"], obj["cls"]
        pair = [(cls, 0), ("A", 0), (sep, 0), ("B", 1), (sep, 1)]
        if kind == "RobertaProcessing":  # <s> A </s></s> B </s>, all type 0
            pair = [(cls, 0), ("A", 0), (sep, 0), (sep, 0), ("B", 0), (sep, 0)]
        return Template([(cls, 0), ("A", 0), (sep, 0)], pair, {cls: [cls_id], sep: [sep_id]},
                        trim_offsets=obj.get("trim_offsets", False), raw=obj)
    if kind == "ByteLevel":
        return Template([("A", 0)], [("A", 0), ("B", 1)], {}, trim_offsets=obj.get("trim_offsets", True), raw=obj)
    if kind == "Sequence":
        parts = [post_processor_from_hf(o, where) for o in obj.get("processors", [])]
        parts = [p for p in parts if p is not None]
        adding = [p for p in parts if p.special_ids]
        base = adding[-1] if adding else (parts[0] if parts else None)
        if base is None:
            return None
        return Template(base.single, base.pair, base.special_ids, any(p.trim_offsets for p in parts), raw=obj)
    raise FormatError(f"{where}: post_processor type {kind!r} is not supported (supported: TemplateProcessing, "
                      "BertProcessing, RobertaProcessing, ByteLevel, Sequence)")


# -------------------------------------------------------------------------------------------- added tokens
@dataclass
class AddedToken:
    """A token matched as a whole in the text (before normalization unless ``normalized``), never split."""

    content: str
    id: int
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = False

    def to_hf(self) -> dict:
        return {"id": self.id, "content": self.content, "single_word": self.single_word, "lstrip": self.lstrip,
                "rstrip": self.rstrip, "normalized": self.normalized, "special": self.special}


@dataclass
class AddedTokenMatcher:
    """Finds added tokens in text: longest match first at the leftmost position (as HF's Aho-Corasick)."""

    tokens: list[AddedToken] = field(default_factory=list)

    def __post_init__(self):
        self.by_content = {t.content: t for t in self.tokens}
        contents = sorted(self.by_content, key=lambda s: (-len(s), s))
        self.regex = regex.compile("|".join(regex.escape(c) for c in contents)) if contents else None

    def split(self, text: str) -> list[tuple[int, int, int | None]]:
        """``(start, end, id)`` segments covering ``text``; ``id`` is None for ordinary text.

        >>> AddedTokenMatcher([AddedToken("<s>", 5)]).split("a<s>b")
        [(0, 1, None), (1, 4, 5), (4, 5, None)]
        """
        if self.regex is None or not text:
            return [(0, len(text), None)] if text else []
        out: list[tuple[int, int, int | None]] = []
        start = 0
        # All matches are found first, then filtered: a match refused by single_word is not searched again for
        # shorter tokens inside it (HF does the same).
        for m in self.regex.finditer(text):
            tok = self.by_content[m.group()]
            s, e = m.span()
            if s < start or (tok.single_word and not _is_single_word(text, s, e)):
                continue
            if tok.lstrip:
                while s > start and text[s - 1].isspace():
                    s -= 1
            if tok.rstrip:
                while e < len(text) and text[e].isspace():
                    e += 1
            if start < s:
                out.append((start, s, None))
            out.append((s, e, tok.id))
            start = e
        if start < len(text):
            out.append((start, len(text), None))
        return out


def _is_single_word(text: str, s: int, e: int) -> bool:
    def word(c: str) -> bool:
        return c.isalnum() or c == "_"

    return not (s > 0 and word(text[s - 1])) and not (e < len(text) and word(text[e]))


def special_tokens_by_role(tokens: dict[str, Any]) -> dict[str, str]:
    """Keep only role → token-string entries that are strings (config files sometimes hold dicts)."""
    out = {}
    for role, tok in tokens.items():
        if isinstance(tok, dict):
            tok = tok.get("content")
        if isinstance(tok, str):
            out[role] = tok
    return out
