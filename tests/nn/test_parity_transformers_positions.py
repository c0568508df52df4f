"""RoPE scaling at real sizes against transformers' own rotary embedding: the frequencies, YaRN's attention factor
and the cos/sin tables of Llama-3.1-, Qwen2.5-, and CodeLlama-like settings (head_dim 128, long positions), which
the tiny parity models cannot reach."""

from __future__ import annotations

import pytest
import torch

from lmforge.nn.attention import build_mask
from lmforge.nn.positions import Rotary, check_rope_scaling

HEAD_DIM = 128

# name → (rope_theta, max_position_embeddings, HF rope_parameters without rope_theta)
CASES = {
    "llama3.1": (500000.0, 131072, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "qwen2.5-yarn": (1000000.0, 32768, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}),
    "deepseek-style-yarn": (10000.0, 163840, {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings":
                                              4096, "mscale": 1.0, "mscale_all_dim": 1.0, "beta_fast": 32,
                                              "beta_slow": 1}),
    "yarn-attention-factor": (10000.0, 8192, {"rope_type": "yarn", "factor": 2.0, "attention_factor": 0.9,
                                              "original_max_position_embeddings": 4096, "truncate": False}),
    "codellama-linear": (1000000.0, 16384, {"rope_type": "linear", "factor": 4.0}),
    "dynamic": (10000.0, 4096, {"rope_type": "dynamic", "factor": 2.0}),
}


def _hf_rotary(theta: float, max_positions: int, rope: dict):
    import transformers as tf
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg = tf.LlamaConfig(hidden_size=HEAD_DIM * 4, num_attention_heads=4, head_dim=HEAD_DIM,
                         max_position_embeddings=max_positions, rope_parameters={**rope, "rope_theta": theta})
    return LlamaRotaryEmbedding(cfg)


def _ours(theta: float, max_positions: int, rope: dict) -> Rotary:
    scaling = dict(rope)
    if rope["rope_type"] == "dynamic":  # how the importer reads it: beyond max_position_embeddings only
        scaling["original_max_position_embeddings"] = max_positions
    return Rotary(HEAD_DIM, theta, check_rope_scaling(scaling, max_positions))


@pytest.mark.parametrize("name", list(CASES))
def test_cos_sin_equal_transformers(name):
    theta, max_positions, rope = CASES[name]
    ref, ours = _hf_rotary(theta, max_positions, rope), _ours(theta, max_positions, rope)
    assert ours.attention_factor == pytest.approx(ref.attention_scaling, rel=1e-12)
    torch.testing.assert_close(ours.inv_freq, ref.inv_freq, rtol=0, atol=0)
    # positions near the start, around the original context, and far beyond it
    positions = torch.tensor([[0, 1, 7, 4095, 4096, 8191, 8192, 30000, max_positions - 1]])
    expected = ref(torch.zeros(1, dtype=torch.float32), positions)
    got = ours(positions)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_dynamic_base_grows_with_the_sequence_like_transformers():
    theta, max_positions, rope = CASES["dynamic"]
    ours = _ours(theta, max_positions, rope)
    for length in (100, 4096, 5000, 12000):  # a fresh transformers module each time: its rotary keeps state
        ref = _hf_rotary(theta, max_positions, rope)
        positions = torch.arange(length)[None]
        expected = ref(torch.zeros(1), positions)
        torch.testing.assert_close(ours(positions), expected, rtol=0, atol=1e-6)
    plain = Rotary(HEAD_DIM, theta)
    long = torch.arange(12000)[None]
    assert (ours(long)[0] - plain(long)[0]).abs().max().item() > 0.5  # beyond 4096 the angles really change
    short = torch.arange(4096)[None]
    torch.testing.assert_close(ours(short), plain(short), rtol=0, atol=0)  # within it nothing changes


def test_window_mask_equals_transformers_sliding_window_overlay():
    from transformers.masking_utils import sliding_window_causal_mask_function

    window, q_len, kv_len = 3, 4, 9
    query, key = torch.arange(kv_len - q_len, kv_len)[:, None], torch.arange(kv_len)[None, :]
    expected = sliding_window_causal_mask_function(window)(torch.tensor(0), torch.tensor(0), query, key)
    got = build_mask(None, q_len, kv_len, causal=True, window=window)[0, 0]
    assert torch.equal(got, expected)
    assert got.sum(-1).tolist() == [window] * q_len  # each query sees exactly `window` keys, itself included
