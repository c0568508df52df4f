"""BERT's normaliser + pre-tokenizer, fused (HF's ``BertNormalizer`` → ``BertPreTokenizer``), exactly as
Hugging Face ``tokenizers`` runs them, so that words and char offsets are identical to ``BertTokenizerFast``:

1. normalise: drop control characters, turn whitespace into spaces, put spaces around CJK ideographs, strip accents
   (NFD, then drop non-spacing marks), lower-case — in that order;
2. pre-tokenize: split on whitespace and isolate every punctuation character.

``pipeline.BertPreTokenizer`` is the stage that runs these; ``wordpiece.WordPiece`` uses that stage too.
"""

from __future__ import annotations

import re
import unicodedata

# CJK ideograph blocks that BERT surrounds with spaces, so each ideograph becomes a word of its own. These are the
# ranges HF tokenizers 0.23 uses (it skips U+2B820..U+2B91F, which older BERT code included; verified char by char
# in tests/tokenizers/test_parity_transformers_wordpiece.py).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

# Rust's ``char::is_whitespace`` (the Unicode White_Space property). Python's ``str.isspace`` differs: it also
# counts U+001C..U+001F (information separators), which BERT treats as control characters, not spaces.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# HF's tables of categories (control, punctuation, non-spacing mark) and of NFD decompositions are Unicode 8.0's,
# older than Python's. Characters assigned since then whose category would matter are plain word characters for
# BERT: no accent stripping, no punctuation split, no control-char removal — only lower-casing (Rust's tables for that
# are current). These ranges are the code points of Unicode 9.0-14.0 (Python 3.11's unicodedata) with a category
# P*, Cf, Mn or Mc or a canonical decomposition; each one is checked against HF in the test suite.
_UNKNOWN_TO_HF = frozenset(
    cp
    for lo, hi in (
        (0x061D, 0x061D), (0x07FD, 0x07FD), (0x0890, 0x0891), (0x0898, 0x089F), (0x08CA, 0x08E2), (0x09FD, 0x09FE),
        (0x0A76, 0x0A76), (0x0AFA, 0x0AFF), (0x0B55, 0x0B55), (0x0C04, 0x0C04), (0x0C3C, 0x0C3C), (0x0C77, 0x0C77),
        (0x0C84, 0x0C84), (0x0D00, 0x0D00), (0x0D3B, 0x0D3C), (0x0D81, 0x0D81), (0x0EBA, 0x0EBA),
        (0x180F, 0x180F), (0x1885, 0x1886), (0x1ABF, 0x1ACE), (0x1B7D, 0x1B7E), (0x1DF6, 0x1DFB), (0x2E43, 0x2E4F),
        (0x2E52, 0x2E5D), (0xA82C, 0xA82C), (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA9BD, 0xA9BD), (0x10D24, 0x10D27),
        (0x10EAB, 0x10EAD), (0x10F46, 0x10F50), (0x10F55, 0x10F59), (0x10F82, 0x10F89), (0x11070, 0x11070),
        (0x11073, 0x11074), (0x110C2, 0x110C2), (0x110CD, 0x110CD), (0x111CF, 0x111CF), (0x1123E, 0x1123E),
        (0x1133B, 0x1133B), (0x11438, 0x1143F), (0x11442, 0x11444), (0x11446, 0x11446), (0x1144B, 0x1144F),
        (0x1145A, 0x1145B), (0x1145D, 0x1145E), (0x11660, 0x1166C), (0x116B9, 0x116B9), (0x1182F, 0x11837),
        (0x11839, 0x1183B), (0x11938, 0x11938), (0x1193B, 0x1193C), (0x1193E, 0x1193E), (0x11943, 0x11946),
        (0x119D4, 0x119D7), (0x119DA, 0x119DB), (0x119E0, 0x119E0), (0x119E2, 0x119E2), (0x11A01, 0x11A0A),
        (0x11A33, 0x11A38), (0x11A3B, 0x11A47), (0x11A51, 0x11A56), (0x11A59, 0x11A5B), (0x11A8A, 0x11A96),
        (0x11A98, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C30, 0x11C36), (0x11C38, 0x11C3D), (0x11C3F, 0x11C3F),
        (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11C92, 0x11CA7), (0x11CAA, 0x11CB0), (0x11CB2, 0x11CB3),
        (0x11CB5, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D), (0x11D3F, 0x11D45),
        (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95, 0x11D95), (0x11D97, 0x11D97), (0x11EF3, 0x11EF4),
        (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF), (0x12FF1, 0x12FF2), (0x13430, 0x13438), (0x16E97, 0x16E9A),
        (0x16F4F, 0x16F4F), (0x16FE2, 0x16FE2), (0x16FE4, 0x16FE4), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46),
        (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024), (0x1E026, 0x1E02A),
        (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF), (0x1E944, 0x1E94A), (0x1E95E, 0x1E95F),
    )
    for cp in range(lo, hi + 1)
)
# Unicode 8.0 categories that were changed since: U+166D CANADIAN SYLLABICS CHI SIGN (now So) and U+111C9 SHARADA
# SANDHI MARK (now Mn) were punctuation; U+1734 HANUNOO SIGN PAMUDPOD (now Mc) was a non-spacing mark.
_OLD_PUNCTUATION = frozenset({0x166D, 0x111C9})
_OLD_NONSPACING_MARKS = frozenset({0x1734})

# Marks that survive accent stripping yet take part in NFD's canonical reordering (combining class != 0 in HF's
# normalisation tables, which are Unicode 9.0's; not a non-spacing mark for its category table), and the musical
# symbols that decompose into such marks. HF applies NFD to the whole text, sorting these marks by combining class;
# per-char NFD cannot, so a text holding one of them takes a reordering pre-pass.
_REORDERED_MARKS = frozenset(
    chr(cp)
    for lo, hi in (
        (0x08D4, 0x08E1), (0x1B44, 0x1B44), (0x1BAA, 0x1BAA), (0x1BF2, 0x1BF3), (0x1DFB, 0x1DFB), (0x302E, 0x302F),
        (0xA953, 0xA953), (0xA9C0, 0xA9C0), (0x111C0, 0x111C0), (0x11235, 0x11235), (0x1134D, 0x1134D),
        (0x11442, 0x11442), (0x11446, 0x11446), (0x116B6, 0x116B6), (0x11C3F, 0x11C3F), (0x1D15E, 0x1D166),
        (0x1D16D, 0x1D172), (0x1D1BB, 0x1D1C0), (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021),
        (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E944, 0x1E94A),
    )
    for cp in range(lo, hi + 1)
)

# ASCII text without control chars is normalised at most by lower-casing, char for char, so its words come straight
# from one regex (C speed) instead of the per-char loop — the common case for English text.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_WORD = re.compile(r"[0-9A-Za-z]+|[^0-9A-Za-z \t\n\r]")
_ASCII_GAP_AND_WORD = re.compile(r"([ \t\n\r]*)([0-9A-Za-z]+|[^0-9A-Za-z \t\n\r])")

# What one original character becomes, for the pre-tokenizer (see ``_char_plan``).
_DROP, _SPACE, _WORD, _ISOLATED, _MIXED = range(5)


def is_cjk_ideograph(ch: str) -> bool:
    """True for a CJK ideograph BERT isolates as its own word.

    >>> is_cjk_ideograph("中"), is_cjk_ideograph("a"), is_cjk_ideograph("の")
    (True, False, False)
    """
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_bert_punctuation(ch: str) -> bool:
    """BERT's punctuation: every ASCII symbol (``$``, ``+``, ``^`` … are symbols in Unicode) or a Unicode P* char.

    >>> is_bert_punctuation("$"), is_bert_punctuation("¿"), is_bert_punctuation("a")
    (True, True, False)
    """
    cp = ord(ch)
    if cp < 128:
        return 33 <= cp <= 126 and not ch.isalnum()
    if cp in _OLD_PUNCTUATION:
        return True
    return unicodedata.category(ch)[0] == "P" and cp not in _UNKNOWN_TO_HF


def _is_control(ch: str) -> bool:
    """Characters ``clean_text`` drops: NUL, U+FFFD and every C* category char except tab, newline, return.

    >>> _is_control("\\x07"), _is_control("\\u200b"), _is_control("\\t")
    (True, True, False)
    """
    if ch in "\t\n\r":
        return False
    if ch == "\ufffd":
        return True
    # Unassigned (Cn) code points are kept: HF's table only lists assigned controls/format chars.
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") and ord(ch) not in _UNKNOWN_TO_HF


def _is_nonspacing_mark(ch: str) -> bool:
    """A mark that accent stripping drops (category Mn, as of Unicode 8.0).

    >>> _is_nonspacing_mark("\u0301"), _is_nonspacing_mark("e")
    (True, False)
    """
    cp = ord(ch)
    if cp in _OLD_NONSPACING_MARKS:
        return True
    return unicodedata.category(ch) == "Mn" and cp not in _UNKNOWN_TO_HF and cp not in _OLD_PUNCTUATION


def _char_plan(ch: str, lowercase: bool, strip_accents: bool, tokenize_chinese_chars: bool, clean_text: bool):
    """How BertNormalizer + BertPreTokenizer treat one original char: ``(kind, normalised_text, classes)``.

    ``classes`` is only set for ``_MIXED`` (one of _SPACE / _WORD / _ISOLATED per output char).

    >>> _char_plan("É", True, True, True, True)
    (2, 'e', None)
    >>> _char_plan("\\x00", True, True, True, True)[0] == _DROP
    True
    """
    if clean_text:
        if ch == "\x00" or _is_control(ch):
            return (_DROP, "", None)
        if ch in _WHITESPACE:
            return (_SPACE, " ", None)
    cjk = tokenize_chinese_chars and is_cjk_ideograph(ch)
    text = ch
    if strip_accents and ord(ch) not in _UNKNOWN_TO_HF:
        # NFD splits 'é' into 'e' + U+0301; the non-spacing marks (Mn) are then dropped.
        text = "".join(c for c in unicodedata.normalize("NFD", text) if not _is_nonspacing_mark(c))
    if lowercase:
        # Char by char, like Rust's char::to_lowercase: no final-sigma context rule ('Σ' → 'σ' always).
        text = "".join(c.lower() for c in text)
    if not text:
        return (_DROP, "", None)
    if cjk:
        # The normaliser wrote ' 中 ': the ideograph becomes a word of its own.
        return (_ISOLATED, text, None)
    classes = tuple(
        _SPACE if c in _WHITESPACE else _ISOLATED if is_bert_punctuation(c) else _WORD for c in text
    )
    if len(text) == 1 and classes[0] != _WORD:
        return (classes[0], text, None)
    if all(k == _WORD for k in classes):
        return (_WORD, text, None)
    return (_MIXED, text, classes)


def basic_tokenize_aligned(
    text: str,
    *,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    clean_text: bool = True,
) -> list[tuple[str, list[int]]]:
    """Like ``basic_tokenize`` but each word comes with the ORIGINAL char index of every one of its chars.

    Normalisation can change lengths (a control char dropped inside a word, a Hangul syllable split into its
    jamo, 'İ' → 'i̇' when accents are kept), so pieces of a word map back to the original text through this list.

    >>> basic_tokenize_aligned("Héllo,\\x07wörld")
    [('hello', [0, 1, 2, 3, 4]), (',', [5]), ('world', [7, 8, 9, 10, 11])]
    """
    return [
        (word, list(range(first, first + len(word))) if positions is None else positions)
        for word, first, positions in normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars,
                                                        clean_text)
    ]


def _ascii_words(text: str, lowercase: bool, base: int = 0) -> list[tuple[str, int, None]] | None:
    """``(word, start, None)`` for an ASCII text without control chars; None for any other text (general path).

    >>> _ascii_words("Don't stop!", True)
    [('don', 0, None), ("'", 3, None), ('t', 4, None), ('stop', 6, None), ('!', 10, None)]
    """
    if not text.isascii() or _ASCII_CONTROL.search(text):
        return None
    words = []
    end = base
    # findall of (gap, word) pairs and a running sum is faster than building a Match object per word.
    for gap, word in _ASCII_GAP_AND_WORD.findall(text.lower() if lowercase else text):
        start = end + len(gap)
        end = start + len(word)
        words.append((word, start, None))
    return words


def normalised_words(
    text: str, lowercase: bool, strip_accents: bool | None, tokenize_chinese_chars: bool, clean_text: bool
) -> list[tuple[str, int, list[int] | None]]:
    """``(word, first, positions)``: ``positions`` is None when the word's chars are ``text[first:first+len]``
    one to one (no index list to allocate in the common case), else each char's original index."""
    words = _ascii_words(text, lowercase)
    if words is not None:
        return words
    if len(text) < 200 or "\n" not in text:
        return _normalised_words_general(text, 0, lowercase, strip_accents, tokenize_chinese_chars, clean_text)
    # A long text with some non-ASCII: choose the path line by line (no word spans a newline, which is whitespace).
    words = []
    base = 0
    for line in text.split("\n"):
        ascii_words = _ascii_words(line, lowercase, base)
        if ascii_words is not None:
            words.extend(ascii_words)
        elif line:
            words.extend(
                _normalised_words_general(line, base, lowercase, strip_accents, tokenize_chinese_chars, clean_text)
            )
        base += len(line) + 1
    return words


def _normalised_words_general(
    text: str, base: int, lowercase: bool, strip_accents: bool | None, tokenize_chinese_chars: bool, clean_text: bool
) -> list[tuple[str, int, list[int]]]:
    """The per-char path for any text; original indices start at ``base``."""
    if strip_accents is None:
        strip_accents = lowercase  # HF's rule: strip accents when lower-casing unless told otherwise
    cache = _plan_cache(lowercase, bool(strip_accents), tokenize_chinese_chars, clean_text)
    words: list[tuple[str, int, list[int] | None]] = []
    chars: list[str] = []  # the word being built
    positions: list[int] = []
    indexed_chars = enumerate(text, base)
    if strip_accents and not _REORDERED_MARKS.isdisjoint(text):
        indexed_chars = _decomposed_in_canonical_order(text, base, clean_text)
    for i, ch in indexed_chars:
        plan = cache.get(ch)
        if plan is None:
            plan = cache[ch] = _char_plan(ch, lowercase, bool(strip_accents), tokenize_chinese_chars, clean_text)
        kind, out, classes = plan
        if kind == _WORD:
            chars.append(out)
            positions.extend([i] * len(out))
        elif kind == _SPACE:
            if chars:
                words.append(("".join(chars), positions[0], positions))
                chars, positions = [], []
        elif kind == _ISOLATED:
            if chars:
                words.append(("".join(chars), positions[0], positions))
                chars, positions = [], []
            words.append((out, i, [i] * len(out)))
        elif kind == _MIXED:
            for c, k in zip(out, classes, strict=True):
                if k == _WORD:
                    chars.append(c)
                    positions.append(i)
                    continue
                if chars:
                    words.append(("".join(chars), positions[0], positions))
                    chars, positions = [], []
                if k == _ISOLATED:
                    words.append((c, i, [i]))
        # _DROP: the char vanishes; the word around it continues (HF joins 'a\x00b' into 'ab')
    if chars:
        words.append(("".join(chars), positions[0], positions))
    return words


def _hf_combining_class(ch: str) -> int:
    """The canonical combining class HF's NFD uses: Python's, except 0 for the marks that survive accent stripping
    but are newer than HF's Unicode 9.0 normalisation tables.

    >>> _hf_combining_class("\\u0301"), _hf_combining_class("\\U0001D16D"), _hf_combining_class("\\u1715")
    (230, 226, 0)
    """
    ccc = unicodedata.combining(ch)
    if not ccc or ch in _REORDERED_MARKS:
        return ccc
    survives_stripping = ord(ch) in _UNKNOWN_TO_HF or unicodedata.category(ch) != "Mn"
    return 0 if survives_stripping and ord(ch) not in _OLD_NONSPACING_MARKS else ccc


def _decomposed_in_canonical_order(text: str, base: int, clean_text: bool) -> list[tuple[int, str]]:
    """``(original index, char)`` of ``text`` after NFD with canonical reordering, as HF's whole-text NFD does it.

    Control chars ``clean_text`` removes are left out first (HF removes them before NFD, so the marks around them
    join one run). Chars HF's tables do not know, and CJK ideographs, stay as they are. Original indices follow
    HF's alignment rule: the first char of each decomposition takes the next original char's index, in text order,
    wherever reordering moved it; the other chars take the index of the char before them.

    >>> _decomposed_in_canonical_order("x\\U0001D16D\\x00\\U0001D165", 0, True)  # marks of class 226, 216
    [(0, 'x'), (1, '𝅥'), (3, '𝅭')]
    """
    items: list[tuple[int, str, bool]] = []  # (original index, char, first char of its decomposition)
    for i, ch in enumerate(text, base):
        if clean_text and (ch == "\x00" or _is_control(ch)):
            continue
        if ord(ch) in _UNKNOWN_TO_HF or is_cjk_ideograph(ch):
            items.append((i, ch, True))
        else:
            items.extend((i, c, k == 0) for k, c in enumerate(unicodedata.normalize("NFD", ch)))

    def combining_class(item: tuple[int, str, bool]) -> int:
        return _hf_combining_class(item[1])

    # Stable-sort every maximal run of non-starters (combining class > 0) by combining class.
    ordered: list[tuple[int, str, bool]] = []
    run: list[tuple[int, str, bool]] = []
    for item in items:
        if combining_class(item):
            run.append(item)
            continue
        ordered.extend(sorted(run, key=combining_class))
        run = []
        ordered.append(item)
    ordered.extend(sorted(run, key=combining_class))

    sources = iter([i for i, _, first in items if first])
    out: list[tuple[int, str]] = []
    for own_index, c, first in ordered:
        index = next(sources) if first else (out[-1][0] if out else own_index)
        out.append((index, c))
    return out


_PLAN_CACHES: dict[tuple[bool, bool, bool, bool], dict[str, tuple]] = {}


def _plan_cache(*flags: bool) -> dict[str, tuple]:
    """One char → plan memo per normaliser setting (a text uses few distinct chars, so this stays small)."""
    return _PLAN_CACHES.setdefault(tuple(flags), {})


def basic_tokenize(
    text: str,
    *,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    clean_text: bool = True,
) -> list[tuple[str, int, int]]:
    """BERT's normaliser + pre-tokenizer: the normalised words with their (start, end) char offsets in ``text``.

    ``strip_accents=None`` means "strip when lower-casing", as in HF and the original BERT.

    >>> basic_tokenize("Hello, Wörld! 中文")
    [('hello', 0, 5), (',', 5, 6), ('world', 7, 12), ('!', 12, 13), ('中', 14, 15), ('文', 15, 16)]
    """
    return [
        (word, first, first + len(word) if positions is None else positions[-1] + 1)
        for word, first, positions in normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars,
                                                        clean_text)
    ]


def basic_words(
    text: str,
    *,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    clean_text: bool = True,
) -> list[str]:
    """``basic_tokenize``'s words without their offsets (faster: ASCII text is one regex ``findall``).

    >>> basic_words("Don't stop!")
    ['don', "'", 't', 'stop', '!']
    """
    if text.isascii() and not _ASCII_CONTROL.search(text):
        return _ASCII_WORD.findall(text.lower() if lowercase else text)
    return [w for w, _, _ in normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars, clean_text)]
