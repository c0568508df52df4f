"""Parity with Hugging Face ``tokenizers`` (an independent Rust implementation): files it writes load in
lmforge with identical ids and offsets, and files lmforge writes load in it with identical ids."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken as HFAddedToken
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from lmforge.data.corpus import builtin_documents, iter_lines
from lmforge.errors import FormatError
from lmforge.tokenizers import Tokenizer, train_tokenizer

# HF's Unicode tables are older than Python's: leave out unassigned code points (and surrogates).
UNICODE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=80)
pytestmark = pytest.mark.xdist_group("hf_tokenizers")


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return list(iter_lines())


@pytest.fixture(scope="module")
def hf_bpe() -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(builtin_documents(), trainer)
    return hf


@pytest.fixture(scope="module")
def ours_from_hf(hf_bpe) -> Tokenizer:
    return Tokenizer.from_hf_json(json.loads(hf_bpe.to_str()))


@pytest.fixture(scope="module")
def ours_trained() -> Tokenizer:
    return train_tokenizer(vocab_size=3000, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def hf_from_ours(ours_trained) -> HFTokenizer:
    return HFTokenizer.from_str(json.dumps(ours_trained.to_hf_json()))


def test_hf_trained_bpe_gives_identical_ids_on_every_corpus_line(hf_bpe, ours_from_hf, lines):
    mismatches = [line for line in lines if hf_bpe.encode(line).ids != ours_from_hf.encode(line)]
    assert not mismatches, mismatches[:3]
    whole = "\n".join(lines[:2000])
    assert hf_bpe.encode(whole).ids == ours_from_hf.encode(whole)


def test_hf_trained_bpe_offsets_and_decode(hf_bpe, ours_from_hf, lines):
    sample = lines[::97] + ["naïve café ☕ <|endoftext|> 中文 e\u0301"]
    ours = ours_from_hf.encode_batch(sample, return_offsets=True)
    for k, line in enumerate(sample):
        ref = hf_bpe.encode(line)
        assert ours["offsets"][k] == [tuple(o) for o in ref.offsets], line
        assert ours_from_hf.decode(ref.ids) == hf_bpe.decode(ref.ids)


@settings(max_examples=600, deadline=None)
@given(UNICODE)
def test_hf_trained_bpe_on_generated_unicode(hf_bpe, ours_from_hf, text):
    assert ours_from_hf.encode(text) == hf_bpe.encode(text).ids


def test_lmforge_trained_bpe_loads_in_hf_with_identical_ids(ours_trained, hf_from_ours, lines):
    mismatches = [line for line in lines if hf_from_ours.encode(line).ids != ours_trained.encode(line)]
    assert not mismatches, mismatches[:3]
    ids = ours_trained.encode(lines[10])
    assert hf_from_ours.decode(ids) == lines[10]
    assert hf_from_ours.get_vocab_size() == ours_trained.vocab_size
    assert hf_from_ours.token_to_id("<|endoftext|>") == ours_trained.token_to_id("<|endoftext|>")


@settings(max_examples=600, deadline=None)
@given(UNICODE)
def test_lmforge_trained_bpe_in_hf_on_generated_unicode(ours_trained, hf_from_ours, text):
    assert hf_from_ours.encode(text).ids == ours_trained.encode(text)


def test_cl100k_pattern_round_trips_through_hf(lines):
    from lmforge.tokenizers import CL100K_PATTERN

    ours = train_tokenizer(builtin_documents()[:30], vocab_size=1200, pattern=CL100K_PATTERN)
    hf = HFTokenizer.from_str(json.dumps(ours.to_hf_json()))
    sample = lines[:1500] + ["I'LL pay 1234567 dollars!!\n\n  ok", "x  \n\n\ty"]
    assert [hf.encode(t).ids for t in sample] == [ours.encode(t) for t in sample]


@pytest.fixture(scope="module")
def hf_pipeline() -> HFTokenizer:
    """Many components at once: normalizers, Split behaviours, Digits, added-token flags, a template."""
    base = train_tokenizer(builtin_documents()[:30], vocab_size=900)
    hf = HFTokenizer.from_str(json.dumps(base.to_hf_json()))
    hf.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("``", '"'),
                                          normalizers.Lowercase(), normalizers.Prepend("▁")])
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern="-", behavior="merged_with_next"),
        pre_tokenizers.Split(pattern=",", behavior="merged_with_previous"),
        pre_tokenizers.Split(pattern=";", behavior="removed"),
        pre_tokenizers.Split(pattern="!", behavior="contiguous"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
    ])
    hf.add_special_tokens([HFAddedToken("<bos>", normalized=False), HFAddedToken("<eos>", normalized=False),
                           HFAddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False)])
    hf.add_tokens([HFAddedToken("foo", single_word=True, normalized=False), HFAddedToken("bar", normalized=True)])
    bos, eos = hf.token_to_id("<bos>"), hf.token_to_id("<eos>")
    hf.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", pair="<bos> $A <eos> $B:1 <eos>:1",
                                                      special_tokens=[("<bos>", bos), ("<eos>", eos)])
    return hf


PIPELINE_TEXTS = [
    "Hello -world, it's 2024!!! ok;done", "ｆｕｌｌ-width ``quotes'' ＡＢＣ", "foo food foo. xfoo foo_bar BAR bar",
    "a [MASK] b  [MASK]  c[MASK]d", "<bos>already<eos> inside", "", "   ", "Ünïcödé ﬁ ligature ½",
]


def test_hf_pipeline_components_parity(hf_pipeline):
    ours = Tokenizer.from_hf_json(json.loads(hf_pipeline.to_str()))
    for text in PIPELINE_TEXTS:
        assert ours.encode(text) == hf_pipeline.encode(text).ids, text
        assert ours.encode(text, add_special_tokens=False) == hf_pipeline.encode(
            text, add_special_tokens=False).ids, text
    assert ours.encode("one", "two") == hf_pipeline.encode("one", "two").ids
    batch = ours.encode_batch(["one two"], ["three"])
    assert batch["token_type_ids"][0] == hf_pipeline.encode("one two", "three").type_ids


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab -,;!1234 ``ＡＢfo[MASK]<bos>é\n")), max_size=40))
def test_hf_pipeline_components_on_generated_text(hf_pipeline, text):
    ours = _pipeline_ours(hf_pipeline)
    assert ours.encode(text) == hf_pipeline.encode(text).ids


_CACHE: dict = {}


def _pipeline_ours(hf):
    if id(hf) not in _CACHE:
        _CACHE[id(hf)] = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    return _CACHE[id(hf)]


def test_truncation_and_padding_match_hf(ours_from_hf, hf_bpe):
    pairs = [("a fairly long first sentence with many words in it", "short"),
             ("tiny", "a second sentence that is much longer than the first one"),
             ("equal length one two three", "equal length one two three")]
    hf = HFTokenizer.from_str(hf_bpe.to_str())
    hf.enable_truncation(max_length=9, strategy="longest_first")
    hf.enable_padding(pad_id=ours_from_hf.token_to_id("<|endoftext|>"), pad_token="<|endoftext|>", length=None)
    ours = Tokenizer.from_hf_json(json.loads(hf_bpe.to_str()))
    ours.pad_token = "<|endoftext|>"
    got = ours.encode_batch([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=9,
                            padding=True, return_offsets=True)
    ref = hf.encode_batch(pairs)
    assert got["input_ids"] == [r.ids for r in ref]
    assert got["attention_mask"] == [r.attention_mask for r in ref]
    assert got["token_type_ids"] == [r.type_ids for r in ref]
    assert got["offsets"] == [[tuple(o) for o in r.offsets] for r in ref]


def test_truncation_and_padding_blocks_are_kept_but_not_applied(hf_bpe):
    hf = HFTokenizer.from_str(hf_bpe.to_str())
    hf.enable_truncation(max_length=4)
    hf.enable_padding(pad_id=0, length=32)
    obj = json.loads(hf.to_str())
    ours = Tokenizer.from_hf_json(obj)
    assert len(ours.encode("a much longer sentence than four tokens for sure")) > 4
    out = ours.to_hf_json()
    assert out["truncation"] == obj["truncation"] and out["padding"] == obj["padding"]


def test_hf_wordpiece_json_parity(lines):
    hf = HFTokenizer(models.WordPiece(unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                                          "[MASK]"], show_progress=False)
    hf.train_from_iterator(builtin_documents()[:40], trainer)
    hf.post_processor = processors.BertProcessing(("[SEP]", hf.token_to_id("[SEP]")),
                                                  ("[CLS]", hf.token_to_id("[CLS]")))
    ours = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    sample = lines[::3] + ["Ünïcödé CJK 中文字 [MASK] emoji 😀 ctrl\x07 x"]
    assert [ours.encode(t) for t in sample] == [hf.encode(t).ids for t in sample]
    got = ours.encode_batch(sample[:50], return_offsets=True)
    assert got["offsets"] == [[tuple(o) for o in hf.encode(t).offsets] for t in sample[:50]]
    back = HFTokenizer.from_str(json.dumps(ours.to_hf_json()))
    assert [back.encode(t).ids for t in sample[:300]] == [hf.encode(t).ids for t in sample[:300]]
    ids = hf.encode(lines[3]).ids
    assert ours.decode(ids) == hf.decode(ids)


def test_lmforge_wordpiece_loads_in_hf(lines):
    ours = train_tokenizer(builtin_documents()[:40], kind="wordpiece", vocab_size=1500)
    hf = HFTokenizer.from_str(json.dumps(ours.to_hf_json()))
    sample = lines[:800]
    assert [hf.encode(t).ids for t in sample] == [ours.encode(t) for t in sample]
    assert ours.encode("hello", "world") == hf.encode("hello", "world").ids


@pytest.mark.parametrize("field,value,name", [
    ("pre_tokenizer", {"type": "UnicodeScripts"}, "UnicodeScripts"),
    ("normalizer", {"type": "Precompiled", "precompiled_charsmap": ""}, "Precompiled"),
    ("decoder", {"type": "CTC"}, "CTC"),
    ("post_processor", {"type": "Strange"}, "Strange"),
])
def test_unsupported_component_is_a_format_error(ours_trained, field, value, name):
    obj = ours_trained.to_hf_json()
    obj[field] = value
    with pytest.raises(FormatError, match=name):
        Tokenizer.from_hf_json(obj, where="x/tokenizer.json")


def test_unsupported_model_is_a_format_error(ours_trained):
    obj = ours_trained.to_hf_json()
    obj["model"] = {"type": "WordLevel", "vocab": {"a": 0}}
    with pytest.raises(FormatError, match="WordLevel"):
        Tokenizer.from_hf_json(obj)


@pytest.fixture(scope="module")
def hf_wordpiece_generic() -> HFTokenizer:
    """WordPiece outside BERT's fused normalizer: NFD + StripAccents + Lowercase, Whitespace split, a template."""
    hf = HFTokenizer(models.WordPiece(unk_token="[UNK]"))
    hf.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase(),
                                          normalizers.Replace(tokenizers_regex(r"\d+"), "#")])
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.Split(pattern=tokenizers_regex(r"[aeiou]"),
                                                                     behavior="isolated", invert=True)])
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                                        show_progress=False)
    hf.train_from_iterator(builtin_documents()[:30], trainer)
    hf.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    hf.decoder = decoders.WordPiece()
    return hf


def tokenizers_regex(pattern: str):
    from tokenizers import Regex

    return Regex(pattern)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcdeiou ÀÉÎñ  \t\n123,.;-Σσς")), max_size=40))
def test_generic_wordpiece_pipeline_parity(hf_wordpiece_generic, text):
    ours = _pipeline_ours(hf_wordpiece_generic)
    ref = hf_wordpiece_generic.encode(text)
    assert ours.encode(text) == ref.ids
    assert ours.encode_batch([text], return_offsets=True)["offsets"][0] == [tuple(o) for o in ref.offsets]


def test_roberta_processing_offsets_parity(ours_trained, lines):
    obj = ours_trained.to_hf_json()
    eot = ours_trained.token_to_id("<|endoftext|>")
    obj["post_processor"] = {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eot], "cls": ["<|endoftext|>", eot],
                             "trim_offsets": True, "add_prefix_space": False}
    hf = HFTokenizer.from_str(json.dumps(obj))
    ours = Tokenizer.from_hf_json(obj)
    sample = lines[:200:7] + ["  spaced  out  ", "x"]
    got = ours.encode_batch(sample, return_offsets=True)
    for k, text in enumerate(sample):
        ref = hf.encode(text)
        assert got["input_ids"][k] == ref.ids
        assert got["offsets"][k] == [tuple(o) for o in ref.offsets], text
    assert ours.encode("a", "b") == hf.encode("a", "b").ids


NORMALIZERS = [None, {"type": "NFC"}, {"type": "NFKC"}, {"type": "NFKD"},
               {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]},
               {"type": "Lowercase"}, {"type": "Prepend", "prepend": "▁"},
               {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
               {"type": "Replace", "pattern": {"Regex": r"[0-9]+"}, "content": "<n>"}]
BEHAVIORS = ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]


def _byte_level(add_prefix_space: bool, use_regex: bool = True) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


PRE_TOKENIZERS = st.one_of(
    st.builds(_byte_level, st.booleans()),
    st.builds(lambda d, aps: {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": d},
                                                                    _byte_level(aps)]}, st.booleans(), st.booleans()),
    st.just({"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, _byte_level(False, False)]}),
    st.just({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, _byte_level(True)]}),
    st.builds(lambda pat, beh, inv: {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": pat, "behavior": beh, "invert": inv}, _byte_level(False)]},
        st.sampled_from([{"String": " "}, {"String": "ab"}, {"Regex": r"\s+"}, {"Regex": r"[,.!]"}]),
        st.sampled_from(BEHAVIORS), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(NORMALIZERS), PRE_TOKENIZERS,
       st.text(alphabet=st.sampled_from(list("ab ,.!12 \tÀéﬁ½Σ中😀\n")), max_size=30))
def test_random_pipelines_match_hf(ours_trained, normalizer, pre_tokenizer, text):
    obj = ours_trained.to_hf_json()
    obj["normalizer"], obj["pre_tokenizer"] = normalizer, pre_tokenizer
    hf = HFTokenizer.from_str(json.dumps(obj))
    ours = Tokenizer.from_hf_json(obj)
    ref = hf.encode(text)
    assert ours.encode(text) == ref.ids
    assert ours.encode_many([text]) == [hf.encode(text, add_special_tokens=False).ids]
    assert ours.encode_batch([text], return_offsets=True)["offsets"][0] == [tuple(o) for o in ref.offsets]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["<x>", "ab", "[M]", "a b", "b"]), st.booleans(), st.booleans(),
                          st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=4,
                unique_by=lambda t: t[0]),
       st.sampled_from([None, {"type": "Lowercase"}, {"type": "NFKC"}]),
       st.lists(st.sampled_from(["<x>", "ab", "[M]", "A", "b", " ", "  ", "\n", "é", "x", "[m]"]), max_size=12)
       .map("".join))
def test_added_token_flags_match_hf(ours_trained, specs, normalizer, text):
    obj = ours_trained.to_hf_json()
    obj["normalizer"] = normalizer
    hf = HFTokenizer.from_str(json.dumps(obj))
    for content, special, lstrip, rstrip, single_word, normalized in specs:  # HF assigns the ids
        token = HFAddedToken(content, lstrip=lstrip, rstrip=rstrip, single_word=single_word, normalized=normalized,
                             special=special)
        (hf.add_special_tokens if special else hf.add_tokens)([token])
    ours = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    ref = hf.encode(text)
    assert ours.encode(text) == ref.ids
    assert ours.encode_batch([text], return_offsets=True)["offsets"][0] == [tuple(o) for o in ref.offsets]


# chars assigned by Unicode 3.2 (HF's normalization tables are older than Python's; these normalize alike), weighted
# toward what the normalization forms move: combining marks, decomposable chars, Hangul jamo
_STABLE = [chr(c) for c in range(1, 0x30000)
           if not 0xD800 <= c < 0xE000 and unicodedata.ucd_3_2_0.category(chr(c)) != "Cn"]
_MARKS = [c for c in _STABLE if unicodedata.combining(c)]
_DECOMPOSABLE = [c for c in _STABLE if unicodedata.decomposition(c)]
_JAMO = [chr(c) for c in [*range(0x1100, 0x1113), *range(0x1161, 0x1176), *range(0x11A8, 0x11C3), 0xAC00, 0xAC01]]
NORMALIZATION_TEXT = st.lists(st.one_of(st.sampled_from(_STABLE), st.sampled_from(_MARKS),
                                        st.sampled_from(_DECOMPOSABLE), st.sampled_from(_JAMO),
                                        st.sampled_from("aeoAE ")), min_size=1, max_size=8).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]), NORMALIZATION_TEXT)
def test_unicode_normalizer_alignment_matches_hf(form, text):
    """Which char of the text each normalized char came from, as HF traces it (a one-char-per-token split
    shows HF's alignment as offsets): ﬁ + acute (NFKC) is f from ﬁ and í from the acute, not both from ﬁ."""
    from tokenizers import Regex

    from lmforge.tokenizers.pipeline import UnicodeNormalizer

    hf = HFTokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    hf.normalizer = getattr(normalizers, form)()
    hf.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")  # (?m): '.' matches newlines
    new, align = UnicodeNormalizer(form)(text, None)
    assert new == unicodedata.normalize(form, text)
    align = list(range(len(new))) if align is None else align
    assert [(a, a + 1) for a in align] == [tuple(o) for o in hf.encode(text).offsets], [hex(ord(c)) for c in text]
