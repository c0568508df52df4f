"""Text-level decoding on a tiny lmforge GPT with a real byte-level BPE tokenizer: streaming = generate,
seeded sampling, stop strings / tokens, eos handling, truncation filters vs transformers' warpers, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.errors import ConfigError, InputError
from lmforge.generate import filter_logits, generate_ids
from lmforge.io import save_model
from lmforge.models.gpt import GPT, GPTConfig


def make_tiny_text_model(folder: Path, eos_token_id: int | list[int] | None = None, seed: int = 0) -> Path:
    """An lmforge model folder: a random 2-layer Llama-style GPT + a 400-token byte-level BPE trained by HF
    tokenizers on the built-in corpus (so multi-byte characters span several tokens)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from lmforge.data.corpus import builtin_text
    from lmforge.tokenizers import Tokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator([builtin_text()[:100_000]], trainer)
    tokenizer = Tokenizer.from_hf_json(json.loads(hf.to_str()))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=400, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, norm="rms",
                          mlp="swiglu", pos="rope", bias=False))
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # tied with wte: sharper, less uniform next-token distributions
    gen = {"eos_token_id": eos_token_id} if eos_token_id is not None else {"eos_token_id": []}
    save_model(folder, model, tokenizer, generation_config=gen)
    return folder


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return lmforge.load(make_tiny_text_model(tmp_path_factory.mktemp("tiny")))


PROMPT = "The interpreter reads"


def test_generate_returns_new_text_and_batches_match_single_prompts(lm):
    one = lm.generate(PROMPT, max_new_tokens=12)
    assert isinstance(one, str) and one
    prompts = [PROMPT, "x = 1", "Modules and packages are"]
    batch = lm.generate(prompts, max_new_tokens=12)
    assert batch == [lm.generate(p, max_new_tokens=12) for p in prompts]
    assert batch[0] == one
    ids = lm.tokenizer.encode(PROMPT)
    assert one == lm.tokenizer.decode(generate_ids(lm.model, [ids], max_new_tokens=12).new_ids[0])


@pytest.mark.parametrize("options", [
    dict(), dict(temperature=1.0, seed=1), dict(temperature=0.8, top_k=50, seed=2),
    dict(temperature=1.2, top_p=0.9, seed=3), dict(temperature=1.0, min_p=0.05, repetition_penalty=1.3, seed=4),
    dict(num_beams=3), dict(num_beams=1, length_penalty=2.0, stop=["zzz"]),
])
def test_stream_joins_to_generate(lm, options):
    pieces = list(lm.stream(PROMPT, max_new_tokens=30, **options))
    assert "".join(pieces) == lm.generate(PROMPT, max_new_tokens=30, **options)
    assert all(pieces)


def test_stream_holds_back_split_characters(lm):
    """Over many seeded samples some characters span tokens; no piece may end inside one."""
    for seed in range(8):
        pieces = list(lm.stream("日本語 — ö", max_new_tokens=25, temperature=1.5, seed=seed))
        full = lm.generate("日本語 — ö", max_new_tokens=25, temperature=1.5, seed=seed)
        assert "".join(pieces) == full
        assert all(not p.endswith("\ufffd") for p in pieces[:-1])


def test_seeded_sampling_is_reproducible(lm):
    a = lm.generate(PROMPT, max_new_tokens=20, temperature=1.0, seed=7)
    assert a == lm.generate(PROMPT, max_new_tokens=20, temperature=1.0, seed=7)
    others = {lm.generate(PROMPT, max_new_tokens=20, temperature=1.0, seed=s) for s in range(8, 12)}
    assert len(others | {a}) > 1
    # top_k=1 leaves only the best token: sampling becomes greedy
    assert lm.generate(PROMPT, max_new_tokens=20, temperature=1.0, top_k=1, seed=3) == lm.generate(
        PROMPT, max_new_tokens=20)


def test_stop_strings_and_stop_tokens(lm):
    full = lm.generate(PROMPT, max_new_tokens=30)
    stop = full[6:9]
    cut = lm.generate(PROMPT, max_new_tokens=30, stop=stop)
    assert cut == full[: full.find(stop)]
    assert "".join(lm.stream(PROMPT, max_new_tokens=30, stop=stop)) == cut
    assert lm.generate([PROMPT, PROMPT], max_new_tokens=30, stop=[stop]) == [cut, cut]
    ids = generate_ids(lm.model, [lm.tokenizer.encode(PROMPT)], max_new_tokens=30).new_ids[0]
    by_token = lm.generate(PROMPT, max_new_tokens=30, stop=ids[3])
    assert by_token == lm.tokenizer.decode(ids[: ids.index(ids[3])])


def test_eos_from_the_model_folder_ends_generation(lm, tmp_path):
    ids = generate_ids(lm.model, [lm.tokenizer.encode(PROMPT)], max_new_tokens=10).new_ids[0]
    eos = ids[4]
    with_eos = lmforge.load(make_tiny_text_model(tmp_path / "eos", eos_token_id=[eos, 10_000]))
    with pytest.warns(UserWarning, match="outside the vocabulary"):
        text = with_eos.generate(PROMPT, max_new_tokens=10)
    assert text == lm.tokenizer.decode(ids[: ids.index(eos)])


def test_filters_match_transformers_warpers():
    from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 3
    for ours, theirs in [
        (dict(top_k=7), TopKLogitsWarper(7)),
        (dict(top_p=0.8), TopPLogitsWarper(0.8)),
        (dict(top_p=0.3), TopPLogitsWarper(0.3)),
        (dict(min_p=0.1), MinPLogitsWarper(0.1)),
    ]:
        expected = theirs(None, logits.clone())
        assert torch.equal(torch.isinf(filter_logits(logits, **ours)), torch.isinf(expected)), ours


def test_step_probabilities_are_reported(lm):
    gen = generate_ids(lm.model, [lm.tokenizer.encode(PROMPT)], max_new_tokens=5, top_n=4)
    for token, step in zip(gen.new_ids[0], gen.steps[0], strict=True):
        assert step.token_id == token and 0 < step.prob <= 1
        assert step.alternatives[0][0] == token  # greedy picks the most probable
        assert [p for _, p in step.alternatives] == sorted((p for _, p in step.alternatives), reverse=True)


def test_bad_input_is_an_lmforge_error(lm):
    with pytest.raises(InputError, match="context window"):
        lm.generate("word " * 100, max_new_tokens=2)
    with pytest.raises(InputError, match="empty"):
        lm.generate("", max_new_tokens=2)
    with pytest.raises(InputError, match="outside the model's vocabulary"):
        generate_ids(lm.model, [[1, 2, 400]], max_new_tokens=2)
    with pytest.raises(ConfigError, match="temperature"):
        lm.generate(PROMPT, temperature=-1)
    with pytest.raises(ConfigError, match="num_beams"):
        lm.generate(PROMPT, num_beams=2, temperature=0.7)
    with pytest.raises(ConfigError, match="top_p"):
        lm.generate(PROMPT, top_p=1.5)


def test_bfloat16_load_generates_close_to_float32(lm):
    half = lmforge.load(lm.path, dtype=torch.bfloat16)
    assert half.model.wte.weight.dtype == torch.bfloat16
    assert half.model.rotary.inv_freq.dtype == torch.float32
    ids = torch.tensor([lm.tokenizer.encode(PROMPT)])
    with torch.no_grad():
        p32 = lm.model(ids)[0, -1].softmax(-1)
        p16 = half.model(ids)[0, -1].float().softmax(-1)
    assert (p32 - p16).abs().max().item() < 0.05
    assert isinstance(half.generate(PROMPT, max_new_tokens=5), str)
