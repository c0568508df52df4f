"""SentencePiece vocabularies in GGUF (``tokenizer.ggml.model = "llama"``: Llama 2, Mistral): a tiny file written
here the way llama.cpp's converter writes one (tokens, scores, token types, byte tokens ``<0xNN>``, no merges),
read by lmforge and by transformers (``gguf_file=``): identical ids, decoded text and roles."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, trainers

from lmforge.data.corpus import builtin_documents, iter_lines
from lmforge.io.gguf import gguf_tokenizer, merges_from_scores, open_gguf

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
# llama.cpp's token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
TEXTS = ["Hello world", "  two  spaces\n\tand a tab", "naïve café ☕ 中文 😀", "<s>[INST] hi [/INST]</s>",
         "a <|im_start|> b <think>c</think>", "", " lead", "1234567 + 89 = ?"]
pytestmark = pytest.mark.xdist_group("gguf_spm")


def _spm_vocab() -> list[str]:
    """A SentencePiece-BPE vocabulary in llama.cpp's order: unk, bos, eos, the 256 bytes, then pieces by merge."""
    hf = HFTokenizer(models.BPE(byte_fallback=True))
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>", *BYTE_TOKENS],
                                  show_progress=False)
    hf.train_from_iterator(builtin_documents()[:40], trainer)
    vocab = json.loads(hf.to_str())["model"]["vocab"]
    return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


def _write(path, tokens, types, *, add_bos: bool | None) -> None:
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(k) for k in range(len(tokens) - 259)])  # SentencePiece: -rank
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.add_chat_template("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def spm_files(tmp_path_factory):
    tokens = _spm_vocab() + ["<|im_start|>", "<think>", "</think>"]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * (len(tokens) - 262) + [CONTROL, USER_DEFINED,
                                                                                          USER_DEFINED]
    folder = tmp_path_factory.mktemp("spm")
    for name, add_bos in (("default.gguf", None), ("nobos.gguf", False)):
        _write(folder / name, tokens, types, add_bos=add_bos)
    return folder


@pytest.mark.parametrize("name", ["default.gguf", "nobos.gguf"])
def test_sentencepiece_gguf_tokenizer_matches_transformers(spm_files, name):
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(str(spm_files), gguf_file=name)
    ours = gguf_tokenizer(open_gguf(spm_files / name))
    sample = list(iter_lines())[::5] + TEXTS
    assert [ours.encode(t) for t in sample] == [theirs(t)["input_ids"] for t in sample]
    for text in TEXTS:
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
        assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids)
    assert (ours.bos_token, ours.eos_token, ours.unk_token) == (theirs.bos_token, theirs.eos_token, theirs.unk_token)
    assert ours.chat_template == theirs.chat_template
    assert ours.vocab_size == len(theirs)


def test_merges_from_scores_match_transformers():
    from transformers.tokenization_utils_base import generate_merges

    tokens = _spm_vocab()
    scores = [0.0] * 259 + [-float(k) for k in range(len(tokens) - 259)]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert merges_from_scores(tokens, scores) == generate_merges(vocab, dict(zip(tokens, scores, strict=True)))
