"""SentencePiece-style tokenizer.json files (Llama 2 / Mistral BPE with byte fallback, T5-style Unigram, the
Metaspace pre-tokenizer and decoder) against HF ``tokenizers`` loading the same file: identical ids, offsets and
decoded text, and files lmforge writes load in HF with identical ids."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from lmforge.data.corpus import builtin_documents, iter_lines
from lmforge.errors import FormatError
from lmforge.tokenizers import Tokenizer, load_tokenizer

UNICODE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=60)
# HF's NFKC tables are older than Python's (U+107A5 decomposes in Python's, not in HF's); Unicode's stability policy
# fixes the normalization of every character assigned by 3.2, so pipelines with NFKC get text made of those
STABLE_UNICODE = st.text(alphabet=st.sampled_from([
    chr(c) for c in range(1, 0x30000) if not 0xD800 <= c < 0xE000 and unicodedata.ucd_3_2_0.category(chr(c)) != "Cn"]),
    max_size=60)
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
SPECIALS = ["<unk>", "<s>", "</s>"]
EXTRA = ["naïve café ☕ 中文 e\u0301 😀😀", "<s>hello</s> world<s>", "  two  spaces\n\ttab ", " lead", "", " ",
         "▁already▁marked", "<unk>中<0x41>", "x" * 40, "ÿ\u00a0\u3000z"]
pytestmark = pytest.mark.xdist_group("hf_tokenizers")


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return list(iter_lines())


def _metaspace(scheme: str, split: bool) -> dict:
    return {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}


# (normalizer, pre_tokenizer, decoder) of the files the ecosystem ships
LLAMA2_LEGACY = ({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                      {"type": "Replace", "pattern": {"String": " "},
                                                       "content": "▁"}]},
                 None,
                 {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                   {"type": "ByteFallback"}, {"type": "Fuse"},
                                                   {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
BPE_PIPELINES = {
    "llama2-legacy": LLAMA2_LEGACY,
    "first-nosplit": (None, _metaspace("first", False), _metaspace("first", False)),
    "always-split": (None, _metaspace("always", True),
                     {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, _metaspace("always", True)]}),
    "never-split": (None, _metaspace("never", True),
                    {"type": "Sequence", "decoders": [_metaspace("never", True), {"type": "ByteFallback"},
                                                      {"type": "Fuse"}]}),
}
UNIGRAM_PIPELINES = {
    "always-split": (None, _metaspace("always", True), _metaspace("always", True)),
    "first-nosplit": (None, _metaspace("first", False), _metaspace("first", False)),
    "t5-like": ({"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
                                                     {"type": "NFKC"}, {"type": "Strip", "strip_left": False,
                                                                        "strip_right": True}]},
                {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, _metaspace("always", True)]},
                {"type": "Sequence", "decoders": [_metaspace("always", True), {"type": "ByteFallback"}]}),
    "never-split": (None, _metaspace("never", True), _metaspace("never", True)),
}


@pytest.fixture(scope="module")
def bpe_base() -> dict:
    """One character-level BPE vocabulary (Metaspace words, byte tokens in the vocabulary as in Llama 2)."""
    hf = HFTokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=1800, special_tokens=SPECIALS + BYTE_TOKENS, show_progress=False)
    hf.train_from_iterator(builtin_documents(), trainer)
    obj = json.loads(hf.to_str())
    obj["added_tokens"] = [t for t in obj["added_tokens"] if t["content"] not in BYTE_TOKENS]  # plain pieces
    return obj


@pytest.fixture(scope="module")
def unigram_base() -> dict:
    hf = HFTokenizer(models.Unigram())
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=1000, special_tokens=SPECIALS, unk_token="<unk>",
                                      show_progress=False)
    hf.train_from_iterator(builtin_documents()[:40], trainer)
    return json.loads(hf.to_str())


def _with_pipeline(base: dict, pipeline: tuple, **model_fields) -> dict:
    obj = json.loads(json.dumps(base))
    obj["normalizer"], obj["pre_tokenizer"], obj["decoder"] = pipeline
    obj["model"].update(model_fields)
    return obj


def _pair(obj: dict, folder) -> tuple[HFTokenizer, Tokenizer]:
    """Both libraries load the same file from disk."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenizer.json"
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return HFTokenizer.from_file(str(path)), load_tokenizer(path)


@pytest.fixture(scope="module", params=list(BPE_PIPELINES))
def bpe_pair(request, bpe_base, tmp_path_factory):
    return _pair(_with_pipeline(bpe_base, BPE_PIPELINES[request.param]), tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="module", params=[(name, fallback) for name in UNIGRAM_PIPELINES for fallback in (False, True)],
                ids=lambda p: f"{p[0]}-{'bytes' if p[1] else 'unk'}")
def unigram_pair(request, unigram_base, tmp_path_factory):
    name, byte_fallback = request.param
    obj = _with_pipeline(unigram_base, UNIGRAM_PIPELINES[name], byte_fallback=byte_fallback)
    if byte_fallback:  # SentencePiece keeps byte pieces in the vocabulary with score 0
        obj["model"]["vocab"] += [[b, 0.0] for b in BYTE_TOKENS]
    return _pair(obj, tmp_path_factory.mktemp("unigram"))


def _check_same(hf: HFTokenizer, ours: Tokenizer, lines: list[str]) -> None:
    mismatches = [t for t in lines if hf.encode(t).ids != ours.encode(t)]
    assert not mismatches, mismatches[:3]
    sample = lines[::40] + EXTRA
    got = ours.encode_batch(sample, return_offsets=True)
    for k, text in enumerate(sample):
        ref = hf.encode(text)
        assert got["input_ids"][k] == ref.ids, text
        assert got["offsets"][k] == [tuple(o) for o in ref.offsets], text
        for skip in (True, False):
            assert ours.decode(ref.ids, skip_special_tokens=skip) == hf.decode(ref.ids, skip_special_tokens=skip)


def test_byte_fallback_bpe_matches_hf_on_every_corpus_line(bpe_pair, lines):
    hf, ours = bpe_pair
    assert ours.kind == "bpe" and ours.vocab_size == hf.get_vocab_size()
    _check_same(hf, ours, lines + EXTRA)


def test_unigram_matches_hf_on_every_corpus_line(unigram_pair, lines):
    hf, ours = unigram_pair
    assert ours.kind == "unigram" and ours.vocab_size == hf.get_vocab_size()
    _check_same(hf, ours, lines + EXTRA)


@settings(max_examples=80, deadline=None)
@given(UNICODE)
def test_byte_fallback_bpe_on_generated_unicode(bpe_pair, text):
    hf, ours = bpe_pair
    ref = hf.encode(text)
    assert ours.encode(text) == ref.ids
    assert ours.encode_batch([text], return_offsets=True)["offsets"][0] == [tuple(o) for o in ref.offsets]
    assert ours.decode(ref.ids) == hf.decode(ref.ids)


def _text_for(ours: Tokenizer, data) -> str:
    uses_nfkc = "NFKC" in json.dumps(ours.to_hf_json()["normalizer"])
    return data.draw(STABLE_UNICODE if uses_nfkc else UNICODE)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_unigram_on_generated_unicode(unigram_pair, data):
    hf, ours = unigram_pair
    text = _text_for(ours, data)
    ref = hf.encode(text)
    assert ours.encode(text) == ref.ids
    assert ours.encode_batch([text], return_offsets=True)["offsets"][0] == [tuple(o) for o in ref.offsets]
    assert ours.decode(ref.ids) == hf.decode(ref.ids)


@pytest.mark.parametrize("byte_fallback", [False, True])
def test_t5_like_unigram_offsets_of_a_compatibility_char_and_a_mark(unigram_base, lines, byte_fallback, tmp_path):
    """U+F900 (NFKC: U+8C48) then U+1D165 (a combining mark): the unknown run spans both chars as in HF, fresh and
    after other texts filled the memos (once seen as (0, 1) when the mark was aligned with the char before it)."""
    obj = _with_pipeline(unigram_base, UNIGRAM_PIPELINES["t5-like"], byte_fallback=byte_fallback)
    if byte_fallback:
        obj["model"]["vocab"] += [[b, 0.0] for b in BYTE_TOKENS]
    hf, ours = _pair(obj, tmp_path)
    texts = ["\uf900\U0001d165", "a \uf900\U0001d165 b", "\ufb01\u0301 x", "E\u0344"]
    for warm in (False, True):
        if warm:
            ours.encode_batch(lines[:200], return_offsets=True)
        for text in texts:
            ref = hf.encode(text)
            got = ours.encode_batch([text], return_offsets=True)
            assert got["input_ids"][0] == ref.ids, text
            assert got["offsets"][0] == [tuple(o) for o in ref.offsets], text


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_lmforge_written_files_load_in_hf_with_identical_ids(kind, bpe_base, unigram_base, lines, tmp_path):
    base, pipeline = (bpe_base, BPE_PIPELINES["llama2-legacy"]) if kind == "bpe" else \
        (unigram_base, UNIGRAM_PIPELINES["t5-like"])
    ours = Tokenizer.from_hf_json(_with_pipeline(base, pipeline))
    ours.save(tmp_path / "hf", format="hf")
    hf = HFTokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    sample = lines[::4] + EXTRA
    reread = load_tokenizer(tmp_path / "hf")
    assert [hf.encode(t).ids for t in sample] == [reread.encode(t) for t in sample]
    if kind == "bpe":  # no floats: HF reads exactly what lmforge holds
        assert [hf.encode(t).ids for t in sample] == [ours.encode(t) for t in sample]
    else:  # every score is a float HF holds, so a spelling exists that HF reads back exactly: no allowance
        assert reread.model.pieces == ours.model.pieces
        held_by_hf = [(piece, score) for piece, score in json.loads(hf.to_str())["model"]["vocab"]]
        assert held_by_hf == [(piece, score) for piece, score in ours.model.pieces]  # HF holds lmforge's floats
    ids = ours.encode(lines[7] + " 中文 ☕")
    assert hf.decode(ids) == ours.decode(ids)
    ours.save(tmp_path / "own", format="lmforge")  # lmforge's own file round-trips too
    back = load_tokenizer(tmp_path / "own")
    assert [back.encode(t) for t in sample] == [ours.encode(t) for t in sample]
    assert back.get_vocab() == ours.get_vocab() and back.kind == kind
    back_hf = load_tokenizer(tmp_path / "hf")
    assert back_hf.bos_token == "<s>" and back_hf.eos_token == "</s>" and back_hf.unk_token == "<unk>"


def test_llama_style_template_and_special_tokens(bpe_base, lines):
    from tokenizers import processors

    obj = _with_pipeline(bpe_base, BPE_PIPELINES["first-nosplit"])
    hf = HFTokenizer.from_str(json.dumps(obj))
    hf.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", hf.token_to_id("<s>"))])
    ours = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    for text in lines[:200:7] + ["<s>[INST] hi [/INST]</s>", "a</s>b"]:
        assert ours.encode(text) == hf.encode(text).ids, text
        assert ours.encode(text, "second part") == hf.encode(text, "second part").ids


def test_explain_shows_merges_and_viterbi_scores(bpe_base, unigram_base):
    bpe = Tokenizer.from_hf_json(_with_pipeline(bpe_base, BPE_PIPELINES["always-split"]))
    unigram = Tokenizer.from_hf_json(_with_pipeline(unigram_base, UNIGRAM_PIPELINES["always-split"]))
    for record in bpe.explain("the tokenizer works"):
        assert "".join(record["pieces"]) == record["word"]
        if len(record["pieces"]) == 1 and len(record["word"]) > 1:
            assert record["merges"][-1][2] == record["word"]  # the last merge makes the whole word
    scores = dict(unigram.model.pieces)
    for record in unigram.explain("the tokenizer works"):
        assert [p for p, _ in record["scores"]] == record["pieces"]
        assert all(scores[p] == s for p, s in record["scores"])


def test_encode_many_and_bad_text(bpe_base, unigram_base, lines):
    from lmforge.errors import InputError

    for tok in (Tokenizer.from_hf_json(_with_pipeline(bpe_base, BPE_PIPELINES["first-nosplit"])),
                Tokenizer.from_hf_json(_with_pipeline(unigram_base, UNIGRAM_PIPELINES["always-split"]))):
        assert tok.encode_many(lines[:300]) == [tok.encode(t) for t in lines[:300]]
        with pytest.raises(InputError, match="surrogate"):
            tok.encode("a\ud800b")


def test_token_bytes_spell_the_text(bpe_base):
    tok = Tokenizer.from_hf_json(_with_pipeline(bpe_base, BPE_PIPELINES["llama2-legacy"]))
    text = "hello wörld 中文"
    assert b"".join(tok.token_bytes(i) for i in tok.encode(text)).decode("utf-8") == " " + text


# ------------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("change,match", [
    (lambda o: o["model"].update(dropout=0.1), "model.dropout"),
    (lambda o: o["model"]["merges"].append(["▁", "nope-not-a-token"]), r"model.merges\[\d+\]"),
    (lambda o: o["model"].update(unk_token="<missing>"), "model.unk_token"),
    (lambda o: o.update(pre_tokenizer=_metaspace("sometimes", True)), "prepend_scheme"),
    (lambda o: o.update(normalizer={"type": "Precompiled", "precompiled_charsmap": "AAAA"}), "Precompiled"),
    (lambda o: o.update(decoder={"type": "ByteLevel"}), "ByteLevel"),
    (lambda o: o.update(decoder={"type": "CTC"}), "CTC"),
])
def test_bad_bpe_files_are_format_errors(bpe_base, change, match):
    obj = _with_pipeline(bpe_base, BPE_PIPELINES["always-split"])
    change(obj)
    with pytest.raises(FormatError, match=match):
        Tokenizer.from_hf_json(obj, where="x/tokenizer.json")


@pytest.mark.parametrize("change,match", [
    (lambda o: o["model"]["vocab"].__setitem__(3, ["piece"]), r"model.vocab\[3\]"),
    (lambda o: o["model"]["vocab"].__setitem__(4, ["piece", "high"]), r"model.vocab\[4\]"),
    (lambda o: o["model"].update(unk_id=10**6), "model.unk_id"),
    (lambda o: o["model"].update(vocab={"a": 0}), "model: field 'vocab'"),
])
def test_bad_unigram_files_are_format_errors(unigram_base, change, match):
    obj = json.loads(json.dumps(unigram_base))
    change(obj)
    with pytest.raises(FormatError, match=match):
        Tokenizer.from_hf_json(obj, where="x/tokenizer.json")


def test_unknown_character_without_unk_id_is_an_input_error_as_in_hf(unigram_base):
    from lmforge.errors import InputError

    obj = json.loads(json.dumps(unigram_base))
    obj["model"]["unk_id"] = None
    hf, ours = HFTokenizer.from_str(json.dumps(obj)), Tokenizer.from_hf_json(obj)
    assert ours.encode("the") == hf.encode("the").ids
    with pytest.raises(Exception, match="unk"):
        hf.encode("中")
    with pytest.raises(InputError, match="unk_id"):
        ours.encode("中")


def test_normalizers_and_decoders_the_files_chain(bpe_base):
    """Strip / NFKC normalizers and the Strip / Replace decoders, one by one, against HF's own objects."""
    obj = _with_pipeline(bpe_base, BPE_PIPELINES["always-split"])
    hf = HFTokenizer.from_str(json.dumps(obj))
    hf.normalizer = normalizers.Sequence([normalizers.Strip(left=True, right=False), normalizers.NFKC()])
    hf.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 1)])
    ours = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    for text in ["  ﬁne ½ x  ", "\u3000 lead and trail \u00a0", "plain", "中 ☕"]:
        ref = hf.encode(text)
        assert ours.encode(text) == ref.ids
        assert ours.encode_batch([text], return_offsets=True)["offsets"][0] == [tuple(o) for o in ref.offsets]
        assert ours.decode(ref.ids) == hf.decode(ref.ids)


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def hf_implementation(request, tmp_path_factory):
    """HF's ready-made SentencePiece tokenizers (Nmt + NFKC + Replace normalizers, Metaspace), saved to a file."""
    from tokenizers import SentencePieceBPETokenizer, SentencePieceUnigramTokenizer

    if request.param == "unigram":
        hf = SentencePieceUnigramTokenizer()
        hf.train_from_iterator(builtin_documents()[:30], vocab_size=800, special_tokens=SPECIALS, unk_token="<unk>",
                               show_progress=False)
    else:
        hf = SentencePieceBPETokenizer(unk_token="<unk>")
        hf.train_from_iterator(builtin_documents(), vocab_size=1500, special_tokens=SPECIALS, show_progress=False)
    path = tmp_path_factory.mktemp("impl") / "tokenizer.json"
    hf.save(str(path))
    return HFTokenizer.from_file(str(path)), load_tokenizer(path)


def test_hf_sentencepiece_implementations_match(hf_implementation, lines):
    hf, ours = hf_implementation
    assert [hf.encode(t).ids for t in lines] == [ours.encode(t) for t in lines]
    for text in lines[::50] + EXTRA + ["ctrl\x07chars\x1f and\u200bzero\ufeffwidth\t\ttabs  \n\n end"]:
        ref = hf.encode(text)
        assert ours.encode(text) == ref.ids, text
        assert ours.encode_batch([text], return_offsets=True)["offsets"][0] == [tuple(o) for o in ref.offsets], text
        assert ours.decode(ref.ids) == hf.decode(ref.ids)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_hf_sentencepiece_implementations_on_generated_unicode(hf_implementation, data):
    hf, ours = hf_implementation
    text = _text_for(ours, data)
    assert ours.encode(text) == hf.encode(text).ids


def test_nmt_normalizer_matches_hf_on_every_code_point():
    from lmforge.tokenizers.pipeline import Nmt

    text = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000)
    assert Nmt()(text, None)[0] == normalizers.Nmt().normalize_str(text)
