"""The Tokenizer interface: batches (padding, truncation, masks, offsets), roles, vocabulary look-ups,
decode, token_bytes, explain, from_byte_level_bpe, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.data.corpus import builtin_documents
from lmforge.errors import ConfigError, InputError
from lmforge.tokenizers import Tokenizer, train_tokenizer
from lmforge.tokenizers.bpe import bytes_to_token_string


@pytest.fixture(scope="module")
def tok():
    t = train_tokenizer(builtin_documents()[:25], vocab_size=700, special_tokens=["<|endoftext|>"])
    t.pad_token = "<|endoftext|>"
    return t


def test_offsets_point_at_the_original_text(tok):
    texts = ["Hello wörld, naïve 😀!", "  spaced   out  ", "a<|endoftext|>b"]
    out = tok.encode_batch(texts, return_offsets=True)
    for text, ids, offsets in zip(texts, out["input_ids"], out["offsets"], strict=True):
        assert len(ids) == len(offsets)
        pieces = b"".join(tok.token_bytes(i) for i in ids).decode()
        assert pieces == text
        covered = "".join(text[s:e] for k, (s, e) in enumerate(offsets) if k == 0 or s >= offsets[k - 1][1])
        assert covered == text  # spans tile the text (tokens inside one char share its span)
    assert out["offsets"][2][1] == (1, 14)  # the special token's own span


def test_padding_sides_masks_and_numpy(tok):
    out = tok.encode_batch(["a b c d e", "a"], padding=True, padding_side="left", return_tensors="np")
    ids, mask = out["input_ids"], out["attention_mask"]
    assert isinstance(ids, np.ndarray) and ids.shape == mask.shape and ids.dtype == np.int64
    assert mask[1].tolist() == [0] * (ids.shape[1] - 1) + [1]
    assert ids[1, 0] == tok.pad_token_id
    out = tok.encode_batch(["a b c", "a"], padding="max_length", max_length=12)
    assert [len(r) for r in out["input_ids"]] == [12, 12]
    with pytest.raises(InputError, match="padding=True"):
        tok.encode_batch(["a b c", "a"], return_tensors="np")


def test_truncation_fits_max_length_with_specials():
    wp = train_tokenizer(builtin_documents()[:25], kind="wordpiece", vocab_size=800)
    out = wp.encode_batch(["one two three four five six seven"], ["eight nine ten"], truncation=True,
                          max_length=8, return_offsets=True)
    ids, types, offs = out["input_ids"][0], out["token_type_ids"][0], out["offsets"][0]
    assert len(ids) == 8 and ids[0] == wp.cls_token_id and ids.count(wp.sep_token_id) == 2
    assert types == [0] * 5 + [1] * 3
    assert offs[0] == (0, 0) and offs[-1] == (0, 0)


def test_roles_are_settable_by_token_or_id(tok):
    t = train_tokenizer(["x y z"] * 3, vocab_size=260, special_tokens=["<a>", "<b>"])
    t.bos_token = "<a>"
    t.eos_token_id = t.token_to_id("<b>")
    assert (t.bos_token_id, t.eos_token) == (t.token_to_id("<a>"), "<b>")
    assert t.mask_token_id is None
    with pytest.raises(InputError, match="not in the vocabulary"):
        t.pad_token = "<nope>"
    with pytest.raises(ConfigError, match="pad token"):
        t.encode_batch(["a", "bb"], padding=True)


def test_vocabulary_lookups(tok):
    vocab = tok.get_vocab()
    assert len(vocab) == tok.vocab_size == 700
    assert all(tok.token_to_id(s) == i for s, i in list(vocab.items())[::37])
    assert tok.id_to_token(32) == "Ġ" and tok.token_bytes(32) == b" "
    assert tok.token_to_id("definitely-not-a-token") is None
    with pytest.raises(InputError, match="out of range"):
        tok.id_to_token(700)
    with pytest.raises(InputError, match="out of range"):
        tok.decode([5, -1])


def test_decode_skips_specials_and_replaces_broken_utf8(tok):
    ids = tok.encode("hi<|endoftext|>there")
    assert tok.decode(ids) == "hithere"
    assert tok.decode(ids, skip_special_tokens=False) == "hi<|endoftext|>there"
    emoji = tok.encode("😀")
    assert tok.decode(emoji[:2]) == "\ufffd"  # half a character


def test_explain_lists_merges_in_order(tok):
    records = tok.explain("the tokenizer<|endoftext|>")
    words = [r["word"] for r in records]
    assert "".join(words) == "the tokenizer<|endoftext|>"
    assert records[-1]["special"] and records[-1]["ids"] == [tok.token_to_id("<|endoftext|>")]
    for r in records[:-1]:
        pieces = [bytes([b]) for b in r["word"].encode()]
        for a, b, merged in r["merges"]:  # replay: every merge joins two adjacent current pieces
            a_b, b_b, m_b = (tok.token_bytes(tok.token_to_id(x)) for x in (a, b, merged))
            assert a_b + b_b == m_b
            k = next(k for k in range(len(pieces) - 1) if pieces[k] == a_b and pieces[k + 1] == b_b)
            pieces[k : k + 2] = [m_b]
            while any(pieces[j] == a_b and pieces[j + 1] == b_b for j in range(len(pieces) - 1)):
                k = next(j for j in range(len(pieces) - 1) if pieces[j] == a_b and pieces[j + 1] == b_b)
                pieces[k : k + 2] = [m_b]
        assert [tok.token_to_id(bytes_to_token_string(p)) for p in pieces] == r["ids"]


def test_from_byte_level_bpe_with_specials_and_bos():
    vocab = {bytes_to_token_string(bytes([b])): b for b in range(256)}
    vocab.update({"Ġt": 256, "he": 257, "Ġthe": 258, "<s>": 259, "</s>": 260})
    tok = Tokenizer.from_byte_level_bpe(vocab, [("Ġ", "t"), ("h", "e"), ("Ġt", "he")],
                                        special_tokens={"<s>": 259, "</s>": 260}, bos_token="<s>",
                                        eos_token="</s>", add_bos=True)
    assert tok.encode(" the") == [259, 258]
    assert tok.encode(" the</s>", add_special_tokens=False) == [258, 260]
    assert tok.bos_token_id == 259 and tok.eos_token_id == 260
    assert tok.decode([259, 258, 260]) == " the"
    with pytest.raises(InputError, match="merges"):
        Tokenizer.from_byte_level_bpe(vocab, [("Ġ", "zz")])


def test_encode_many_equals_encode(tok):
    docs = builtin_documents()[:10] + ["", "<|endoftext|> x"]
    assert tok.encode_many(docs) == [tok.encode(d, add_special_tokens=False) for d in docs]
    assert tok.encode_many(docs, num_workers=2) == [tok.encode(d, add_special_tokens=False) for d in docs]


def test_bad_arguments_are_clear(tok):
    with pytest.raises(InputError, match="str"):
        tok.encode(123)
    with pytest.raises(InputError, match="one str"):
        tok.encode_batch("not a list")
    with pytest.raises(ConfigError, match="max_length"):
        tok.encode_batch(["a"], truncation=True)
    with pytest.raises(ConfigError, match="padding_side"):
        tok.encode_batch(["a"], padding_side="middle")
    with pytest.raises(InputError, match="pairs"):
        tok.encode_batch(["a", "b"], ["c"])
    with pytest.raises(ConfigError, match="kind"):
        train_tokenizer(["a"], kind="unigram", vocab_size=300)


def test_pickles_and_threads_share_a_tokenizer(tok):
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    docs = builtin_documents()[:20]
    expected = [tok._encode_ids(d) for d in docs]
    again = pickle.loads(pickle.dumps(tok))
    assert again.encode_many(docs) == expected
    with ThreadPoolExecutor(4) as pool:  # the compiled path runs without the GIL: its cache is locked
        results = list(pool.map(lambda d: tok.encode_many([d])[0], docs * 3))
    assert results == expected * 3
