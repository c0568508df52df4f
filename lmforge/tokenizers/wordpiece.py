"""WordPiece, the BERT tokenizer: normalise, split into words, then cut each word greedily into vocab pieces.

The pipeline, exactly as Hugging Face ``tokenizers`` runs it for BERT (``BertNormalizer`` → ``BertPreTokenizer`` →
``WordPiece`` model), so that ids and char offsets are identical to ``BertTokenizerFast``:

1. normalise (``basic_tokenize``): drop control characters, turn whitespace into spaces, put spaces around CJK
   ideographs, strip accents (NFD, then drop non-spacing marks), lower-case — in that order;
2. pre-tokenize (also ``basic_tokenize``): split on whitespace and isolate every punctuation character;
3. cut each word (``WordPiece.tokenize_word``): greedy longest-match-first from the left; pieces after the first
   carry the ``##`` prefix; a word that cannot be covered (or is longer than 100 chars) becomes one ``[UNK]``.

``train_wordpiece`` learns a vocabulary the way HF's ``WordPieceTrainer`` does (a BPE merge learner over
characters whose non-initial forms carry ``##``), and ``decode_wordpiece`` is HF's WordPiece decoder.

This module imports no torch.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping

from lmforge.errors import ConfigError, InputError

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
        for word, first, positions in _normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars,
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


def _normalised_words(
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
        for word, first, positions in _normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars,
                                                        clean_text)
    ]


class WordPiece:
    """The WordPiece model: greedy longest-match-first cutting of one word into vocabulary pieces.

    >>> wp = WordPiece({"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "aff": 4})
    >>> wp.tokenize_word("unaffable")
    [('un', 0, 2), ('##aff', 2, 5), ('##able', 5, 9)]
    >>> wp.tokenize_word("xyz")
    [('[UNK]', 0, 3)]
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
    ) -> None:
        if not vocab:
            raise ConfigError("WordPiece vocab: is empty; expected a mapping token -> id")
        self.vocab: dict[str, int] = dict(vocab)
        self.unk_token = unk_token
        self.continuing_subword_prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        p = len(continuing_subword_prefix)
        # Continuation pieces keyed WITHOUT their prefix: the inner loop looks up word[start:end] directly
        # instead of building '##' + substring for every candidate.
        self._continuations = {tok[p:]: i for tok, i in self.vocab.items() if tok.startswith(continuing_subword_prefix)}
        # No piece is longer than these, so the longest-match search starts there instead of at the word's end
        # (turns the O(n^2) slicing of long words into O(n * max_len)).
        self._max_initial = max(len(t) for t in self.vocab)
        self._max_continuation = max((len(t) for t in self._continuations), default=0)
        self._cache: dict[str, list[tuple[str, int, int]]] = {}
        self._ids_cache: dict[str, list[int]] = {}

    def __repr__(self) -> str:
        return f"WordPiece(vocab_size={len(self.vocab)}, unk_token={self.unk_token!r})"

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def _unk(self, word: str) -> list[tuple[str, int, int]]:
        if self.unk_token not in self.vocab:
            raise InputError(
                f"WordPiece: the word {word[:40]!r} cannot be covered and the unk_token {self.unk_token!r} "
                "is not in the vocab"
            )
        return [(self.unk_token, 0, len(word))]

    def tokenize_word(self, word: str) -> list[tuple[str, int, int]]:
        """Cut one (normalised) word into pieces with (start, end) char offsets inside the word.

        The result is memoised: natural text repeats its words, so most words are cut once.
        """
        pieces = self._cache.get(word)
        if pieces is not None:
            return pieces
        pieces = self._tokenize_word(word)
        if len(self._cache) >= 200_000:
            self._cache.clear()  # bound memory on huge corpora; recomputing is cheap
        self._cache[word] = pieces
        return pieces

    def _tokenize_word(self, word: str) -> list[tuple[str, int, int]]:
        n = len(word)
        if n > self.max_input_chars_per_word:
            return self._unk(word)
        vocab, continuations = self.vocab, self._continuations
        prefix = self.continuing_subword_prefix
        pieces: list[tuple[str, int, int]] = []
        start = 0
        while start < n:
            if start == 0:
                end = min(n, self._max_initial)
                while end > 0 and word[:end] not in vocab:
                    end -= 1
                if end == 0:
                    return self._unk(word)
                pieces.append((word[:end], 0, end))
            else:
                end = min(n, start + self._max_continuation)
                while end > start and word[start:end] not in continuations:
                    end -= 1
                if end == start:
                    return self._unk(word)
                pieces.append((prefix + word[start:end], start, end))
            start = end
        return pieces

    def explain_word(self, word: str) -> dict:
        """How the greedy search cut ``word``: every candidate tried at every position, longest first.

        >>> WordPiece({"[UNK]": 0, "a": 1, "ab": 2, "##c": 3}).explain_word("abc")["steps"]
        [{'start': 0, 'tried': ['abc', 'ab'], 'matched': 'ab'}, {'start': 2, 'tried': ['##c'], 'matched': '##c'}]
        """
        prefix = self.continuing_subword_prefix
        steps = []
        n = len(word)
        unk_reason = None
        if n > self.max_input_chars_per_word:
            unk_reason = f"longer than max_input_chars_per_word={self.max_input_chars_per_word}"
        start = 0
        while unk_reason is None and start < n:
            bound = self._max_initial if start == 0 else self._max_continuation
            step = {"start": start, "tried": [], "matched": None}
            for end in range(min(n, start + bound), start, -1):
                candidate = word[start:end] if start == 0 else prefix + word[start:end]
                step["tried"].append(candidate)
                if candidate in self.vocab:
                    step["matched"] = candidate
                    break
            steps.append(step)
            if step["matched"] is None:
                unk_reason = f"no vocab piece matches at char {start}"
            else:
                start = end
        pieces = self.tokenize_word(word)
        return {"word": word, "pieces": [p for p, _, _ in pieces], "offsets": [(s, e) for _, s, e in pieces],
                "steps": steps, "unk": unk_reason}

    def tokenize(
        self,
        text: str,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        clean_text: bool = True,
    ) -> list[tuple[str, int, int]]:
        """Normalise, split and cut ``text``: pieces with (start, end) char offsets into the ORIGINAL text.

        No special tokens are added (the ``Tokenizer`` adds ``[CLS] … [SEP]``).

        >>> WordPiece({"[UNK]": 0, "hello": 1, ",": 2, "wo": 3, "##rld": 4}).tokenize("Hello, World")
        [('hello', 0, 5), (',', 5, 6), ('wo', 7, 9), ('##rld', 9, 12)]
        """
        if strip_accents is None:
            strip_accents = lowercase
        out: list[tuple[str, int, int]] = []
        cache = self._cache
        for word, first, pos in _normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars, clean_text):
            pieces = cache.get(word) or self.tokenize_word(word)
            if pos is None:
                # The word's chars are the original chars one to one, so offsets just shift.
                if len(pieces) == 1:
                    out.append((pieces[0][0], first, first + len(word)))
                else:
                    out.extend([(piece, first + s, first + e) for piece, s, e in pieces])
            else:
                out.extend([(piece, pos[s], pos[e - 1] + 1) for piece, s, e in self.tokenize_word(word)])
        return out

    def encode(
        self,
        text: str,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        clean_text: bool = True,
    ) -> list[int]:
        """Ids of ``tokenize(text)`` (no special tokens); each distinct word's ids are computed once.

        >>> WordPiece({"[UNK]": 0, "hi": 1, "!": 2}).encode("Hi!?")
        [1, 2, 0]
        """
        if strip_accents is None:
            strip_accents = lowercase
        if text.isascii() and not _ASCII_CONTROL.search(text):
            words = _ASCII_WORD.findall(text.lower() if lowercase else text)  # no offsets needed: findall is faster
        else:
            words = [w for w, _, _ in _normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars,
                                                         clean_text)]
        ids: list[int] = []
        cache, word_ids = self._ids_cache, self._word_ids
        for word in words:
            cached = cache.get(word)
            ids.extend(cached if cached is not None else word_ids(word))
        return ids

    def _word_ids(self, word: str) -> list[int]:
        vocab = self.vocab
        ids = [vocab[piece] for piece, _, _ in self.tokenize_word(word)]
        if len(self._ids_cache) >= 200_000:
            self._ids_cache.clear()
        self._ids_cache[word] = ids
        return ids


def train_wordpiece(
    word_counts: Mapping[str, int],
    *,
    vocab_size: int,
    min_frequency: int = 2,
    special_tokens: Iterable[str] = (),
    limit_alphabet: int | None = None,
    continuing_subword_prefix: str = "##",
    show_progress: bool = False,
) -> dict[str, int]:
    """Learn a WordPiece vocab from pre-tokenized word counts, as HF's ``WordPieceTrainer`` does.

    Vocab order: special tokens, then the alphabet (single chars, by code point), then their ``##`` forms (by
    code point), then one piece per merge. Merges are BPE's: repeatedly join the most frequent adjacent pair of
    pieces (ties → the pair with the smallest ids, so training is deterministic), until ``vocab_size`` pieces
    exist or the best pair occurs fewer than ``min_frequency`` times. Pair counts are updated incrementally —
    only the words containing the merged pair are touched — and the best pair comes from a lazy max-heap.

    >>> v = train_wordpiece({"hug": 10, "pug": 5, "hugs": 5}, vocab_size=20, special_tokens=["[UNK]"])
    >>> list(v)[:6], "hug" in v
    (['[UNK]', 'g', 'h', 'p', 's', 'u'], True)
    """
    special_tokens = list(special_tokens)
    if vocab_size < 1:
        raise ConfigError(f"vocab_size: must be positive, got {vocab_size}")
    if limit_alphabet is not None and limit_alphabet < 0:
        raise ConfigError(f"limit_alphabet: must be >= 0 or None, got {limit_alphabet}")
    for word, count in word_counts.items():
        if not isinstance(word, str) or not isinstance(count, int) or count < 0:
            raise InputError(f"word_counts: expected str -> non-negative int, got {word!r} -> {count!r}")
    prefix = continuing_subword_prefix

    id_to_token: list[str] = []
    token_to_id: dict[str, int] = {}

    def add(token: str) -> int:
        if token not in token_to_id:
            token_to_id[token] = len(id_to_token)
            id_to_token.append(token)
        return token_to_id[token]

    for tok in special_tokens:
        add(tok)

    # The alphabet: every char, weighted by word counts; with limit_alphabet only the most frequent survive
    # (ties: the smaller code point survives). Added in code point order.
    char_counts: dict[str, int] = defaultdict(int)
    for word, count in word_counts.items():
        for ch in word:
            char_counts[ch] += count
    alphabet = sorted(char_counts, key=lambda c: (-char_counts[c], ord(c)))
    if limit_alphabet is not None:
        alphabet = alphabet[:limit_alphabet]
    alphabet.sort()
    for ch in alphabet:
        add(ch)
    allowed = set(alphabet)
    # '##x' forms for chars that occur inside a word (chars outside the alphabet are skipped, as in HF).
    continuation_chars = sorted({ch for word in word_counts for ch in word[1:] if ch in allowed})
    for ch in continuation_chars:
        add(prefix + ch)

    # Every distinct word as a list of piece ids.
    words: list[list[int]] = []
    counts: list[int] = []
    for word, count in sorted(word_counts.items()):
        symbols = [
            token_to_id[ch if k == 0 else prefix + ch] for k, ch in enumerate(word) if ch in allowed
        ]
        # HF adds the '##' form only for non-first chars; a first char dropped by limit_alphabet leaves a word
        # whose first kept piece is a '##' form, which is what HF does too.
        if symbols and count > 0:
            words.append(symbols)
            counts.append(count)

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (symbols, count) in enumerate(zip(words, counts, strict=True)):
        for pair in zip(symbols, symbols[1:], strict=False):
            pair_counts[pair] += count
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in pair_counts.items() if c > 0]
    heapq.heapify(heap)

    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=max(0, vocab_size - len(id_to_token)), desc="wordpiece merges", unit="merge")

    while len(id_to_token) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if -neg != current:  # stale entry: re-queue with the true count
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        if current < max(1, min_frequency):
            break
        a, b = pair
        piece_b = id_to_token[b]
        if prefix and piece_b.startswith(prefix):
            piece_b = piece_b[len(prefix):]
        new_id = add(id_to_token[a] + piece_b)
        if progress is not None:
            progress.update(1)
        touched: dict[tuple[int, int], int] = defaultdict(int)
        for w in sorted(where.pop(pair, ())):
            _merge_word(words[w], a, b, new_id, counts[w], w, touched, where)
        pair_counts.pop(pair, None)
        for p, delta in touched.items():
            if delta:
                pair_counts[p] += delta
                if delta > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
    if progress is not None:
        progress.close()
    return dict(token_to_id)


def _merge_word(
    symbols: list[int],
    a: int,
    b: int,
    new_id: int,
    count: int,
    w: int,
    touched: dict[tuple[int, int], int],
    where: dict[tuple[int, int], set[int]],
) -> None:
    """Replace every (a, b) in ``symbols`` (left to right, in place) by ``new_id``; record pair-count changes.

    The neighbours' pairs are unlinked and relinked one merge at a time, so 'a b a b' → 'N N' nets out right:
    (b, a) -1, (N, a) +1 -1, (N, N) +1.

    >>> syms, t, wh = [1, 2, 1, 2], defaultdict(int), defaultdict(set)
    >>> _merge_word(syms, 1, 2, 9, 1, 0, t, wh); syms, {p: d for p, d in t.items() if d}
    ([9, 9], {(2, 1): -1, (9, 9): 1})
    """
    i = 0
    while i < len(symbols) - 1:
        if symbols[i] == a and symbols[i + 1] == b:
            if i > 0:
                left = symbols[i - 1]
                touched[(left, a)] -= count
                touched[(left, new_id)] += count
                where[(left, new_id)].add(w)
            symbols[i : i + 2] = [new_id]
            if i < len(symbols) - 1:
                right = symbols[i + 1]
                touched[(b, right)] -= count
                touched[(new_id, right)] += count
                where[(new_id, right)].add(w)
        i += 1


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
