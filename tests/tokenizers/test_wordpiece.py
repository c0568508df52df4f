"""WordPiece: the greedy model against HF's ``models.WordPiece``, the trainer (determinism, coverage, HF's
``WordPieceTrainer`` and ``BertTokenizerFast`` as oracles), the decoder against HF's ``decoders.WordPiece``, and
the invariants that tie them together."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.corpus import iter_lines
from lmforge.errors import ConfigError, InputError, LmforgeError
from lmforge.tokenizers.wordpiece import WordPiece, basic_tokenize, decode_wordpiece, train_wordpiece

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def corpus_lines() -> list[str]:
    return list(iter_lines())


@pytest.fixture(scope="module")
def corpus_word_counts(corpus_lines) -> Counter:
    return Counter(w for line in corpus_lines for w, _, _ in basic_tokenize(line))


@pytest.fixture(scope="module")
def trained(corpus_word_counts) -> dict[str, int]:
    return train_wordpiece(corpus_word_counts, vocab_size=3000, special_tokens=BERT_SPECIALS)


@pytest.fixture(scope="module")
def minilm_wordpiece(minilm_path) -> WordPiece:
    with open(minilm_path / "vocab.txt", encoding="utf-8") as f:
        return WordPiece({line.rstrip("\n"): i for i, line in enumerate(f)})


# ------------------------------------------------------------------------------------------------ the model
def _hf_wordpiece(vocab: dict[str, int], prefix: str, max_chars: int):
    from tokenizers import Tokenizer, models, pre_tokenizers

    hf = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=prefix,
                                    max_input_chars_per_word=max_chars))
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return hf


_pieces = st.text("abcdé", min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.sets(_pieces, max_size=12),
    continuation=st.sets(_pieces, max_size=12),
    words=st.lists(st.text("abcdéx", min_size=1, max_size=12), min_size=1, max_size=6),
    prefix=st.sampled_from(["##", "@@", "▁"]),
    max_chars=st.sampled_from([5, 9, 100]),
)
def test_tokenize_word_matches_hf_model(initial, continuation, words, prefix, max_chars):
    tokens = ["[UNK]", *sorted(initial), *sorted(prefix + c for c in continuation)]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    ours = WordPiece(vocab, continuing_subword_prefix=prefix, max_input_chars_per_word=max_chars)
    hf = _hf_wordpiece(vocab, prefix, max_chars)
    for word in words:
        enc = hf.encode(word)
        assert ours.tokenize_word(word) == [(t, s, e) for t, (s, e) in zip(enc.tokens, enc.offsets, strict=True)]


def test_greedy_longest_match_on_the_real_vocab(minilm_wordpiece, corpus_word_counts):
    wp, vocab = minilm_wordpiece, minilm_wordpiece.vocab
    split_words = 0
    for word in corpus_word_counts:
        pieces = wp.tokenize_word(word)
        if pieces == [("[UNK]", 0, len(word))]:
            continue
        assert "".join(p.removeprefix("##") if s else p for p, s, _ in pieces) == word
        for piece, start, end in pieces:
            assert piece in vocab
            # longest match: no longer candidate starting here is a vocab piece
            for longer in range(end + 1, len(word) + 1):
                candidate = word[start:longer] if start == 0 else "##" + word[start:longer]
                assert candidate not in vocab, (word, candidate)
        split_words += len(pieces) > 1
    assert split_words > 100


def test_explain_word_shows_the_search():
    wp = WordPiece({"[UNK]": 0, "un": 1, "u": 2, "##ff": 3, "##aff": 4, "##able": 5, "##a": 6})
    info = wp.explain_word("unaffable")
    assert info["pieces"] == ["un", "##aff", "##able"] == [p for p, _, _ in wp.tokenize_word("unaffable")]
    assert info["unk"] is None
    for step in info["steps"]:
        # every candidate but the last failed; candidates shrink one char at a time
        assert all(c not in wp.vocab for c in step["tried"][:-1]) and step["tried"][-1] == step["matched"]
        assert [len(c) for c in step["tried"]] == sorted((len(c) for c in step["tried"]), reverse=True)
    stuck = wp.explain_word("unxyz")
    assert stuck["pieces"] == ["[UNK]"] and "char 2" in stuck["unk"]
    # greedy never backtracks: 'a' + '##bcd' would cover 'abcd', but the longest first match 'ab' leaves 'cd'
    greedy = WordPiece({"[UNK]": 0, "a": 1, "ab": 2, "##bcd": 3}).explain_word("abcd")
    assert greedy["pieces"] == ["[UNK]"] and greedy["steps"][0]["matched"] == "ab"
    assert "max_input_chars_per_word" in WordPiece(wp.vocab, max_input_chars_per_word=3).explain_word("unaff")["unk"]


def test_words_over_the_limit_are_unknown():
    wp = WordPiece({"[UNK]": 0, "a": 1, "##a": 2}, max_input_chars_per_word=5)
    assert wp.tokenize_word("aaaaa") == [("a", 0, 1)] + [("##a", i, i + 1) for i in range(1, 5)]
    assert wp.tokenize_word("aaaaaa") == [("[UNK]", 0, 6)]


def test_bad_vocab_gives_clear_errors():
    with pytest.raises(ConfigError, match="empty"):
        WordPiece({})
    wp = WordPiece({"a": 0}, unk_token="[UNK]")
    assert wp.tokenize_word("a") == [("a", 0, 1)]
    with pytest.raises(InputError, match=r"\[UNK\].*not in the vocab"):
        wp.tokenize_word("b")


# ---------------------------------------------------------------------------------------------- the trainer
def test_training_is_deterministic(corpus_word_counts, trained):
    items = list(corpus_word_counts.items())
    random.Random(0).shuffle(items)
    again = train_wordpiece(dict(items), vocab_size=3000, special_tokens=BERT_SPECIALS)
    assert list(again.items()) == list(trained.items())


def test_vocab_layout(corpus_word_counts, trained):
    assert len(trained) == 3000 and sorted(trained.values()) == list(range(3000))
    tokens = list(trained)
    assert tokens[:5] == BERT_SPECIALS
    alphabet = sorted({c for w in corpus_word_counts for c in w})
    assert tokens[5 : 5 + len(alphabet)] == alphabet
    inner = sorted({c for w in corpus_word_counts for c in w[1:]})
    assert tokens[5 + len(alphabet) : 5 + len(alphabet) + len(inner)] == ["##" + c for c in inner]


def test_trained_vocab_covers_the_corpus_and_keeps_frequent_words_whole(corpus_word_counts, trained):
    wp = WordPiece(trained)
    unk = total = 0
    for word, count in corpus_word_counts.items():
        pieces = wp.tokenize_word(word)
        total += count * len(pieces)
        unk += count * (pieces[0][0] == "[UNK]")
    assert unk == 0 and total < 1.5 * sum(corpus_word_counts.values())
    for word, _ in corpus_word_counts.most_common(100):
        assert wp.tokenize_word(word) == [(word, 0, len(word))]


def test_bert_tokenizer_fast_on_our_vocab_gives_our_ids(corpus_lines, trained):
    from transformers import BertTokenizerFast

    oracle = BertTokenizerFast(vocab=trained)
    wp = WordPiece(trained)
    texts = corpus_lines[:3000] + ["Unseen: Ωμέγα 中文 😀 naïve", "x" * 150]
    expected = oracle(texts)["input_ids"]
    got = [[trained["[CLS]"], *wp.encode(t), trained["[SEP]"]] for t in texts]
    assert got == expected


def test_close_to_hf_wordpiece_trainer(corpus_lines, corpus_word_counts):
    """HF's WordPieceTrainer learns the same merges; only ties may differ, since HF orders '##' pieces (and so
    breaks ties) by hash-map iteration, which changes from run to run."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordPieceTrainer(vocab_size=2000, special_tokens=BERT_SPECIALS, min_frequency=2,
                                        show_progress=False)
    hf.train_from_iterator([" ".join(w for w, _, _ in basic_tokenize(line)) for line in corpus_lines], trainer)
    ours = train_wordpiece(corpus_word_counts, vocab_size=2000, special_tokens=BERT_SPECIALS)
    theirs = hf.get_vocab()
    assert len(ours) == len(theirs) == 2000
    assert len(set(ours) & set(theirs)) >= 0.98 * 2000


def test_min_frequency_and_limit_alphabet():
    counts = {"low": 5, "lower": 2, "newest": 6, "widest": 3, "zq": 1}
    only_alphabet = train_wordpiece(counts, vocab_size=1000, min_frequency=100)
    assert all(len(t.removeprefix("##")) == 1 for t in only_alphabet)
    merged = train_wordpiece(counts, vocab_size=1000, min_frequency=2)
    assert "##est" in merged and "low" in merged and "zq" not in merged  # 'z q' occurs once
    frequent = train_wordpiece(counts, vocab_size=1000, min_frequency=1, limit_alphabet=4)
    char_freq = Counter()
    for w, c in counts.items():
        for ch in w:
            char_freq[ch] += c
    kept = [t for t in frequent if len(t) == 1]
    assert sorted(kept) == sorted(c for c, _ in char_freq.most_common(4))
    assert all(ch in kept for t in frequent for ch in t.removeprefix("##"))


def test_trainer_rejects_bad_input():
    with pytest.raises(ConfigError, match="vocab_size"):
        train_wordpiece({"a": 1}, vocab_size=0)
    with pytest.raises(InputError, match="word_counts"):
        train_wordpiece({"a": -1}, vocab_size=10)
    assert issubclass(ConfigError, LmforgeError)


def test_progress_bar_does_not_change_the_result(capsys):
    counts = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
    assert train_wordpiece(counts, vocab_size=30, show_progress=True) == train_wordpiece(counts, vocab_size=30)


# ---------------------------------------------------------------------------------------------- the decoder
_tokens = st.lists(
    st.sampled_from(["hello", "##lo", "wo", "##rld", ",", ".", "?", "!", "'", "s", "'s", "n't", "'m", "'ve", "'re",
                     "do", "not", "do not", "##", "##.", " ", "a b", "[UNK]", "é"]),
    max_size=15,
)


@settings(max_examples=300, deadline=None)
@given(tokens=_tokens, cleanup=st.booleans())
def test_decoder_matches_hf(tokens, cleanup):
    from tokenizers import decoders

    assert decode_wordpiece(tokens, cleanup=cleanup) == decoders.WordPiece(prefix="##", cleanup=cleanup).decode(tokens)


_ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.lower)


@settings(max_examples=200, deadline=None)
@given(text=_ascii_text)
def test_decode_of_encode_is_the_normalised_text(minilm_wordpiece, text):
    pieces = [p for p, _, _ in minilm_wordpiece.tokenize(text)]
    assert "[UNK]" not in pieces
    assert decode_wordpiece(pieces, cleanup=False) == " ".join(w for w, _, _ in basic_tokenize(text))


# ------------------------------------------------------------------------------------ basic_tokenize invariants
@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_words_are_ordered_disjoint_spans(text):
    words = basic_tokenize(text)
    for (word, start, end), (_, next_start, _) in zip(words, words[1:], strict=False):
        assert word and 0 <= start < end <= next_start
    for word, _, end in words:
        assert " " not in word and end <= len(text)


@settings(max_examples=100, deadline=None)
@given(text=st.text("abcXYZ 0129\t\n", max_size=60))
def test_plain_words_split_like_str_split(text):
    assert [w for w, _, _ in basic_tokenize(text, lowercase=False)] == text.split()
    assert [w for w, _, _ in basic_tokenize(text)] == text.lower().split()


def test_piece_offsets_where_normalisation_changed_lengths():
    """'İ' lower-cases to two chars and NUL vanishes: pieces must map back through each char's origin, as HF does."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece as HFWordPiece

    vocab = {t: i for i, t in enumerate(["[UNK]", "i", "##\u0307", "##a", "##b", "a", "##\u0307a", "ǉ", "##x", "##i"])}
    hf = Tokenizer(HFWordPiece(vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    texts = ["İ\x00a", "İ\x00\x00ab İa", "a\x00İ\x00b", "Ǉ\x01x İ"]
    for text, enc in zip(texts, hf.encode_batch(texts, add_special_tokens=False), strict=True):
        ours = WordPiece(vocab).tokenize(text, strip_accents=False)
        assert "[UNK]" not in enc.tokens
        assert ours == [(t, s, e) for t, (s, e) in zip(enc.tokens, enc.offsets, strict=True)], text


def test_marks_reordered_by_nfd_keep_hf_alignment():
    """Whole-text NFD sorts combining marks by class; marks that survive accent stripping (musical symbols' stems
    and flags) come out reordered, and HF aligns them by position. Pieces and offsets against HF's model."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece as HFWordPiece

    stem, flag = "\U0001D165", "\U0001D16D"  # combining classes 216 and 226
    vocab = {t: i for i, t in enumerate(["[UNK]", "x", "e", "\U0001D158", stem, "##" + stem, "##" + flag, "##y"])}
    hf = Tokenizer(HFWordPiece(vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    texts = [f"x{flag}{stem}y", f"x{flag}\u0301{stem}y", f"x{flag}\x00{stem}", f"é{flag}\u0316{stem}",
             f"\U0001D15F{flag} x", f"\u0344{flag}{stem} x", f"X{flag}\u0e48{stem}Y"]
    for text, enc in zip(texts, hf.encode_batch(texts, add_special_tokens=False), strict=True):
        assert enc.tokens.count("[UNK]") <= 1
        ours = WordPiece(vocab).tokenize(text)
        assert ours == [(t, s, e) for t, (s, e) in zip(enc.tokens, enc.offsets, strict=True)], text
