"""WordPiece parity with Hugging Face on the REAL all-MiniLM-L6-v2 BERT vocabulary (uncased, 30,522 pieces).

Oracle: ``transformers.BertTokenizerFast(vocab=<vocab.txt>)`` (ids and ``return_offsets_mapping``) and, for the
normaliser alone, HF ``tokenizers``' ``BertNormalizer`` + ``BertPreTokenizer``.

Note for transformers 5.x: ``BertTokenizerFast(vocab_file=...)`` silently IGNORES the file (it builds a 5-token
vocab); the path must be passed as ``vocab=``.

Unicode versions: Python 3.11's ``unicodedata`` is Unicode 14.0; HF's category/decomposition tables are Unicode 8.0
(lmforge carries the differences, see ``_UNKNOWN_TO_HF`` in wordpiece.py, checked char by char below) while its
lower-casing (Rust's std) is Unicode 16. Characters assigned in Unicode 15-16 are unassigned (Cn) for Python, so
Python cannot lower-case them the way HF does (e.g. U+A7CB LATIN CAPITAL LETTER RAMS HORN): that is why generated
text excludes Cn. Surrogates (Cs) are excluded because a Rust string cannot hold them.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.corpus import iter_lines
from lmforge.tokenizers.wordpiece import WordPiece, basic_tokenize

pytestmark = pytest.mark.xdist_group("minilm_wordpiece")

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

MIXED_TEXTS = [
    "Héllo, Wörld! Crème brûlée à la café — naïve façade.",
    "İstanbul'da İĞNE; DİYARBAKIR ıı İi",  # Turkish dotted/dotless I
    "Straße, STRASSE, ẞ, Maß und Fuß",  # German sharp s (capital ẞ lower-cases to ß)
    "e\u0301 a\u0300\u0316b o\u0308\u0304 Z\u0335\u0321algo",  # combining marks, stacked and out of canonical order
    "中文分词：我爱北京天安门。日本語のテキスト、한국어 텍스트",  # CJK ideographs, kana, hangul
    "𠀀𪜀𫝀 丽 豈 — CJK extension B/C/D and compatibility ideographs",
    "Emoji 😀👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️ ☕ and ZWJ sequences",
    "ctrl\x00chars\x07here\x1b[31m red \x7f del\ufffd rep\u200bzero\u200dwidth\ufeffbom",
    "tabs\tand\nnew\r\nlines\x0bvt\x0cff\x85nel\u2028ls\u00a0nbsp\u3000ideo",
    "العربية: مرحبا بالعالم! עברית: שלום עולם, فارسی",  # right-to-left scripts
    "Ελληνικά ΣΟΦΙΑ Σ ς, Кириллица ПРИВЕТ мир, ǅungla ǈ",
    "ﬁnance ﬂow ﬀ Ⅻ ① ㎏ ｆｕｌｌｗｉｄｔｈ",  # compatibility chars NFD keeps
    "x" * 101 + " " + "y" * 100 + " antidisestablishmentarianism" * 4,  # > 100 chars → [UNK]
    "a" * 99 + "é" + " done",  # 100 chars after normalisation: tokenized
    "punct!?¿¡…—–‐'\"«»‹›„“”‘’()[]{}<>@#$%^&*_+=|\\~`/:;,.",
    "$100 + 50% = €150; 3.14159 × 2 ≈ 6.28 ≤ 7 ≠ 8 ¼ ½ ²",
    "def f(x):\n    return x ** 2  # square\n\tprint(f'{x!r}')",
    "Dr. Smith's U.S.-based co-op's e-mail: smith@example.com, https://example.org/a?b=c&d=e",
    "  leading and trailing spaces   ",
    "",
    "\x00\x01\x02",
    "ǰ ΐ ΰ ẖ ẗ ẘ ẙ ẚ ŉ",  # chars with multi-char full case mappings
    "İ\x00a Ǉ\x01x ﬀ\x02y",  # a char that grows next to one that vanishes: offsets must not just shift
    "x\U0001D16D\U0001D165y é\U0001D16D\u0316\x00\U0001D165 \U0001D160\U0001D16D",  # marks NFD reorders, unstripped
]


@pytest.fixture(scope="module")
def vocab_path(minilm_path):
    return minilm_path / "vocab.txt"


@pytest.fixture(scope="module")
def vocab(vocab_path) -> dict[str, int]:
    with open(vocab_path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


@pytest.fixture(scope="module")
def oracle(vocab_path):
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab=str(vocab_path))
    assert tok.backend_tokenizer.get_vocab_size() == 30522
    return tok


@pytest.fixture(scope="module")
def model(vocab) -> WordPiece:
    return WordPiece(vocab)


def _ours(model: WordPiece, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    pieces = model.tokenize(text)
    ids = [model.vocab["[CLS]"]] + [model.vocab[p] for p, _, _ in pieces] + [model.vocab["[SEP]"]]
    offsets = [(0, 0)] + [(s, e) for _, s, e in pieces] + [(0, 0)]
    return ids, offsets


def _assert_same(model, oracle, texts):
    enc = oracle(list(texts), return_offsets_mapping=True)
    for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"], strict=True):
        ours_ids, ours_offsets = _ours(model, text)
        assert ours_ids == ids, (text, oracle.convert_ids_to_tokens(ids))
        assert ours_offsets == [tuple(o) for o in offsets], text


def test_vocab_is_the_real_bert_uncased(vocab):
    assert len(vocab) == 30522
    assert all(vocab[s] in (0, 100, 101, 102, 103) for s in SPECIALS)


def test_every_line_of_the_builtin_corpus(model, oracle):
    lines = list(iter_lines())
    assert len(lines) > 5000
    _assert_same(model, oracle, lines)


def test_mixed_text(model, oracle):
    _assert_same(model, oracle, MIXED_TEXTS)
    # the limit really is exercised: 101 chars → one [UNK], exactly 100 chars → pieces
    ids, _ = _ours(model, MIXED_TEXTS[12])
    assert ids.count(model.vocab["[UNK]"]) == 1 and ids[1] == model.vocab["[UNK]"]


def test_offsets_point_at_the_original_text(model):
    """Each piece's span, cut from the ORIGINAL text and normalised on its own, holds the piece (equals it unless the
    piece is part of one decomposed char, like a Hangul jamo) — also where normalisation dropped chars (NUL,
    accents) from the middle of a word."""
    texts = [*MIXED_TEXTS, "İstanbul'da Straße e\u0301t\u0301e\u0301 a\x00b"]
    checked = exact = 0
    for text in texts:
        for piece, start, end in model.tokenize(text):
            if piece == "[UNK]":
                continue
            normalised = "".join(w for w, _, _ in basic_tokenize(text[start:end]))
            assert piece.removeprefix("##") in normalised, (text, piece, start, end)
            exact += normalised == piece.removeprefix("##")
            checked += 1
    assert checked > 200 and exact > 0.9 * checked


# Text drawn from all assigned code points, with a bias towards ASCII words so that pieces, not only [UNK], occur.
_chars = st.characters(exclude_categories=("Cs", "Cn"))
# Also marks that accent stripping drops, marks NFD reorders but keeps, a char that lower-cases to two, a NUL.
_fragments = ["the", " ", "Word", "ing", ".", "é", "\u0301", "\U0001D16D", "\U0001D165", "İ", "\x00"]
_texts = st.lists(
    st.one_of(st.text(_chars, min_size=1, max_size=6), st.sampled_from(_fragments)),
    max_size=20,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(_texts, min_size=1, max_size=8))
def test_hypothesis_unicode(model, oracle, texts):
    # A written "[MASK]" would be matched as a special token by transformers; that is the Tokenizer's job.
    texts = [t for t in texts if not any(s in t for s in SPECIALS)]
    if texts:
        _assert_same(model, oracle, texts)


def test_every_assigned_code_point_between_letters():
    """The normaliser + pre-tokenizer, char by char over all of Unicode 14 (except surrogates, private use and
    unassigned), against HF's BertNormalizer + BertPreTokenizer: words and offsets. This is what pins down the
    tables in wordpiece.py (``_UNKNOWN_TO_HF``, ``_REORDERED_MARKS`` …)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    hf = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    assigned = [chr(cp) for cp in range(0x110000) if unicodedata.category(chr(cp)) not in ("Cs", "Cn", "Co")]
    assert len(assigned) > 140_000
    # 256 code points per text, each between two letters (one upper-case, to exercise lower-casing), and each
    # before combining marks that whole-text NFD reorders (classes 226, 230, 216), to check its combining class.
    texts = [
        "".join(f"A{ch}b {ch}\U0001D16D\u0301\U0001D165 " for ch in assigned[i : i + 256])
        for i in range(0, len(assigned), 256)
    ]
    encodings = hf.encode_batch(texts)
    mismatched = []
    for text, enc in zip(texts, encodings, strict=True):
        ours = basic_tokenize(text)
        expected_words = [w for w, _ in hf.pre_tokenizer.pre_tokenize_str(hf.normalizer.normalize_str(text))]
        if [(s, e) for _, s, e in ours] != [tuple(o) for o in enc.offsets] or [w for w, _, _ in ours] != expected_words:
            mismatched.append(text)
    assert not mismatched, [f"U+{ord(t[1]):04X}.." for t in mismatched[:20]]


def test_normaliser_switches_match_hf():
    """lowercase / strip_accents / tokenize_chinese_chars / clean_text, each against HF's BertNormalizer: words and
    offsets, also through the WordPiece model on the real vocab."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    for lowercase in (True, False):
        for strip_accents in (None, True, False):
            for chinese in (True, False):
                for clean in (True, False):
                    hf = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
                    hf.normalizer = normalizers.BertNormalizer(
                        clean_text=clean, handle_chinese_chars=chinese, strip_accents=strip_accents, lowercase=lowercase
                    )
                    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
                    options = {"lowercase": lowercase, "strip_accents": strip_accents,
                               "tokenize_chinese_chars": chinese, "clean_text": clean}
                    for text, enc in zip(MIXED_TEXTS, hf.encode_batch(MIXED_TEXTS), strict=True):
                        expected = [w for w, _ in hf.pre_tokenizer.pre_tokenize_str(hf.normalizer.normalize_str(text))]
                        ours = basic_tokenize(text, **options)
                        assert [w for w, _, _ in ours] == expected, (options, text)
                        assert [(s, e) for _, s, e in ours] == [tuple(o) for o in enc.offsets], (options, text)


def test_wordpiece_offsets_under_every_normaliser_switch(vocab):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece as HFWordPiece

    model = WordPiece(vocab)
    for lowercase in (True, False):
        for strip_accents in (None, True, False):
            hf = Tokenizer(HFWordPiece(vocab, unk_token="[UNK]"))
            hf.normalizer = normalizers.BertNormalizer(strip_accents=strip_accents, lowercase=lowercase)
            hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            for text, enc in zip(MIXED_TEXTS, hf.encode_batch(MIXED_TEXTS, add_special_tokens=False), strict=True):
                ours = model.tokenize(text, lowercase=lowercase, strip_accents=strip_accents)
                assert [p for p, _, _ in ours] == enc.tokens, (lowercase, strip_accents, text)
                assert [(s, e) for _, s, e in ours] == [tuple(o) for o in enc.offsets], (lowercase, strip_accents, text)
                assert model.encode(text, lowercase=lowercase, strip_accents=strip_accents) == enc.ids


# ------------------------------------------------------------------ the same, through lmforge's public Tokenizer API
def test_public_api_bare_vocab_txt(vocab_path, oracle, tmp_path):
    from lmforge import load_tokenizer

    (tmp_path / "vocab.txt").write_bytes(vocab_path.read_bytes())  # no tokenizer_config.json beside it
    tok = load_tokenizer(tmp_path / "vocab.txt")
    texts = [*MIXED_TEXTS, "[MASK] written [UNK] in the [CLS]text[SEP]", *list(iter_lines())[:1500]]
    assert [tok.encode(t) for t in texts] == oracle(texts)["input_ids"]


def test_public_api_tokenizer_json_vs_hf_tokenizers(minilm_path):
    """``load_tokenizer(tokenizer.json)`` against ``tokenizers.Tokenizer.from_file`` on the same file: ids and
    offsets, with special tokens written in the raw text. The file stores padding/truncation to 128, which HF
    applies on encode and lmforge only keeps; the oracle's are switched off to compare the encodings themselves."""
    from tokenizers import Tokenizer as HFTokenizer

    from lmforge import load_tokenizer

    path = minilm_path / "tokenizer.json"
    tok = load_tokenizer(path)
    hf = HFTokenizer.from_file(str(path))
    hf.no_padding()
    hf.no_truncation()
    texts = [*MIXED_TEXTS, "[MASK] written [UNK] in the [CLS]text[SEP]", *list(iter_lines())[1500:3000]]
    got = tok.encode_batch(texts, return_offsets=True)
    expected = hf.encode_batch(texts)
    assert got["input_ids"] == [e.ids for e in expected]
    assert got["offsets"] == [[tuple(o) for o in e.offsets] for e in expected]
