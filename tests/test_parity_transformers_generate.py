"""Decoding parity with transformers' generate: greedy (batched, left-padded), beam search, repetition penalty."""

from __future__ import annotations

import pytest
import torch

import lmforge
from lmforge.generate import generate_ids

pytestmark = pytest.mark.xdist_group("hf_tiny_gpt")

PROMPTS = [[5, 9, 14, 3, 22, 7], [40, 41, 2], [17, 60, 18, 9]]


def _hf_model(kind: str):
    """A tiny random model at init std 0.3 (transformers' default 0.02 leaves attention nearly uniform, where a
    wrong mask or position hardly moves the logits, and so hardly ever the decoded ids)."""
    import transformers as tf

    torch.manual_seed({"gpt2": 10, "llama": 11, "mixtral": 12}[kind])
    if kind == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=64, n_positions=48,
                                                    initializer_range=0.3))
    common = dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
                  intermediate_size=48, vocab_size=64, max_position_embeddings=48, initializer_range=0.3)
    if kind == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(**common))
    return tf.MixtralForCausalLM(tf.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2))


@pytest.fixture(scope="module", params=["gpt2", "llama", "mixtral"])
def pair(request, tmp_path_factory):
    ref = _hf_model(request.param).eval()
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    return lmforge.load(folder), ref


def _hf_generate(ref, prompts, eos: int | None, **kw) -> list[list[int]]:
    """transformers' new tokens per prompt, cut after the first eos (the rest is padding)."""
    t = max(map(len, prompts))
    ids = torch.tensor([[0] * (t - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (t - len(p)) + [1] * len(p) for p in prompts])
    out = ref.generate(ids, attention_mask=mask, eos_token_id=eos, pad_token_id=0, **kw)[:, t:].tolist()
    return [row[: row.index(eos) + 1] if eos is not None and eos in row else row for row in out]


def _ours(gen) -> list[list[int]]:
    return [ids + ([EOS] if why == "eos" else []) for ids, why in zip(gen.new_ids, gen.finish_reasons, strict=True)]


EOS = 3


def test_greedy_batch_equals_transformers(pair):
    lm, ref = pair
    # eos = a token greedy decoding really produces (the 3rd of prompt 1), so rows end early and are padded
    eos = _hf_generate(ref, PROMPTS, None, max_new_tokens=3, do_sample=False)[1][2]
    expected = _hf_generate(ref, PROMPTS, eos, max_new_tokens=15, do_sample=False)
    got = generate_ids(lm.model, PROMPTS, max_new_tokens=15, eos_token_ids=[eos])
    assert [ids + ([eos] if why == "eos" else []) for ids, why in zip(got.new_ids, got.finish_reasons, strict=True)
            ] == expected
    assert got.finish_reasons[1] == "eos"
    # one prompt alone decodes exactly as inside the padded batch
    alone = generate_ids(lm.model, PROMPTS[2:3], max_new_tokens=15, eos_token_ids=[eos])
    assert alone.new_ids[0] == got.new_ids[2]


def test_beam_search_equals_transformers(pair):
    lm, ref = pair
    expected = _hf_generate(ref, PROMPTS, EOS, max_new_tokens=10, do_sample=False, num_beams=4)
    got = generate_ids(lm.model, PROMPTS, max_new_tokens=10, num_beams=4, eos_token_ids=[EOS])
    assert _ours(got) == expected


def test_beam_search_with_length_penalty_equals_transformers(pair):
    lm, ref = pair
    expected = _hf_generate(ref, PROMPTS[:1], EOS, max_new_tokens=8, do_sample=False, num_beams=3,
                            length_penalty=0.5)
    got = generate_ids(lm.model, PROMPTS[:1], max_new_tokens=8, num_beams=3, length_penalty=0.5, eos_token_ids=[EOS])
    assert _ours(got) == expected


def test_repetition_penalty_equals_transformers(pair):
    lm, ref = pair
    expected = _hf_generate(ref, PROMPTS[:1], EOS, max_new_tokens=15, do_sample=False, repetition_penalty=1.5)
    got = generate_ids(lm.model, PROMPTS[:1], max_new_tokens=15, repetition_penalty=1.5, eos_token_ids=[EOS])
    assert _ours(got) == expected


def test_step_probabilities_match_transformers_scores(pair):
    lm, ref = pair
    out = ref.generate(torch.tensor([PROMPTS[0]]), max_new_tokens=5, do_sample=False, output_scores=True,
                       return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    got = generate_ids(lm.model, PROMPTS[:1], max_new_tokens=5, top_n=3)
    for step, scores in zip(got.steps[0], out.scores, strict=True):
        probs = scores[0].softmax(-1)
        assert step.prob == pytest.approx(probs[step.token_id].item(), abs=1e-5)
        assert [i for i, _ in step.alternatives] == probs.topk(3).indices.tolist()
