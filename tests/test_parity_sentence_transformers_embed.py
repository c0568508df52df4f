"""Sentence embeddings and search vs sentence-transformers on the real all-MiniLM-L6-v2 (and on tiny random
BERTs with other pooling configs written by lmforge): cosine >= 0.99999 per sentence, same top-k hits."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

import lmforge
from lmforge.embed import SentenceConfig, search
from lmforge.errors import InputError
from lmforge.io.hf_bert import save_hf_bert
from lmforge.models.bert import Bert, BertConfig

pytestmark = pytest.mark.xdist_group("minilm")

SENTENCES = [
    "A man is eating food.",
    "A man is riding a horse.",
    "The new movie is awesome!",
    "Naïve café owners say «déjà vu» — twice.",
    "",
    "日本語のテキストと English mixed",
    "word " * 400,  # longer than max_seq_length (256): truncated the same way
    "Hello world",
]


@pytest.fixture(scope="module")
def st_model(minilm_path):
    from sentence_transformers import SentenceTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture(scope="module")
def lm(minilm_path):
    return lmforge.load(minilm_path)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_minilm_embeddings_match_sentence_transformers(lm, st_model):
    torch.set_num_threads(1)
    ours = lm.embed(SENTENCES, batch_size=3)  # small batches: sorting by length must keep the input order
    ref = st_model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    assert ours.shape == ref.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    assert _cosines(ours, ref).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # modules.json lists Normalize
    assert lm.sentence_config.max_seq_length == 256


def test_search_matches_sentence_transformers(lm, st_model):
    from sentence_transformers import util

    corpus = ["A man is eating pasta.", "Someone in a gorilla costume is playing drums.", "A monkey is playing "
              "drums.", "A man is riding a white horse on an enclosed ground.", "Two men pushed carts through "
              "the woods.", "A cheetah is running behind its prey."]
    queries = ["A man is eating food.", "A cheetah chases prey across a field."]
    hits = search(lm.model, lm.tokenizer, queries, corpus, k=3, config=lm.sentence_config)
    ref = util.semantic_search(st_model.encode(queries, convert_to_tensor=True),
                               st_model.encode(corpus, convert_to_tensor=True), top_k=3)
    for ours, theirs in zip(hits, ref, strict=True):
        assert [h.index for h in ours] == [r["corpus_id"] for r in theirs]
        np.testing.assert_allclose([h.score for h in ours], [r["score"] for r in theirs], atol=1e-5)
    assert hits[0][0].text == "A man is eating pasta."


def test_folder_without_sentence_config_gets_mean_pooling(minilm_path, tmp_path):
    # The bare HF folder (no modules.json): mean pooling, NOT normalised — what sentence-transformers does too.
    from sentence_transformers import SentenceTransformer

    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        os.symlink(minilm_path / name, tmp_path / name)
    lm = lmforge.load(tmp_path)
    assert lm.sentence_config == SentenceConfig()
    ours = lm.embed(SENTENCES[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SentenceTransformer(str(tmp_path), device="cpu").encode(SENTENCES[:4])
    assert _cosines(ours, ref).min() >= 0.99999
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)  # no normalisation: same lengths too
    assert abs(np.linalg.norm(ours, axis=1) - 1).max() > 0.01


@pytest.mark.parametrize("pooling,normalize", [(("cls",), False), (("max",), True), (("mean", "max"), False)])
def test_written_pooling_configs_load_the_same_in_both(minilm_path, tmp_path, pooling, normalize):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=30522, n_embd=32, n_layer=2, n_head=4, ffn_hidden=64, block_size=64))
    config = SentenceConfig(pooling=pooling, normalize=normalize, max_seq_length=12)
    save_hf_bert(model, tmp_path, tokenizer_source=minilm_path, sentence_config=config)
    lm = lmforge.load(tmp_path)
    assert lm.sentence_config == config
    texts = SENTENCES[:4] + ["a much longer sentence that will certainly be cut at twelve word pieces by both"]
    ours = lm.embed(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SentenceTransformer(str(tmp_path), device="cpu").encode(texts)
    assert ours.shape == ref.shape == (len(texts), 32 * len(pooling))
    assert _cosines(ours, ref).min() >= 0.99999


def test_bad_inputs(lm):
    with pytest.raises(InputError, match="single string"):
        lm.embed("not a list")
    assert lm.embed([]).shape == (0, 384)
    with pytest.raises(InputError, match="empty"):
        search(lm.model, lm.tokenizer, ["q"], [])


def test_transformer_in_a_sub_folder_loads_like_sentence_transformers(minilm_path, tmp_path, lm):
    """Older sentence-transformers folders keep the transformer in ``0_Transformer/`` (no top-level config.json)."""
    import json
    import shutil

    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "st"
    sub = folder / "0_Transformer"
    sub.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "sentence_bert_config.json"):
        shutil.copy(minilm_path / name, sub / name)
    shutil.copytree(minilm_path / "1_Pooling", folder / "1_Pooling")
    modules = json.loads((minilm_path / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "2_Normalize").mkdir()

    ours = lmforge.load(folder).embed(SENTENCES[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES[:4], convert_to_numpy=True)
    assert _cosines(ours, ref).min() >= 0.99999
    np.testing.assert_allclose(ours, lm.embed(SENTENCES[:4]), atol=1e-6)
