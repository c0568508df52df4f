"""The rest of the Llama family against transformers: RoPE scaling (linear, dynamic NTK, llama3, yarn) and
sliding-window attention (Mistral, Qwen2 with full and sliding layers), on tiny random checkpoints saved with
save_pretrained; export back to the HF layout loads in transformers with the same logits.

The checkpoints use a large init (std 0.2) so attention is sharp and the position encoding matters: every logits
test also checks that the plain-RoPE / full-attention answer is far off, so a scaling or window that was silently
ignored could not pass.
"""

from __future__ import annotations

import pytest
import torch

import lmforge
from lmforge.errors import ConfigError
from lmforge.generate import generate_ids
from lmforge.io import save_hf, save_model
from lmforge.io.hf_gpt import config_from_hf
from lmforge.models.gpt import GPT, GPTConfig

pytestmark = pytest.mark.xdist_group("hf_rope_window")

VOCAB = 101
COMMON = dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=64, intermediate_size=96,
              vocab_size=VOCAB, bos_token_id=0, eos_token_id=None, initializer_range=0.2)

# rope type → (max_position_embeddings, rope_parameters, test length: past the original context where there is one)
ROPE_CASES = {
    "linear": (64, {"rope_type": "linear", "factor": 4.0}, 40),
    "dynamic": (16, {"rope_type": "dynamic", "factor": 2.0}, 28),
    # head_dim 16, original 64: the fastest pair is kept, two are blended, the rest slowed (all three branches)
    "llama3": (128, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}, 90),
    "yarn": (128, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}, 60),
    "yarn-options": (128, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "mscale": 0.8,
                           "mscale_all_dim": 0.5, "beta_fast": 16, "beta_slow": 2, "truncate": False}, 60),
}


def _save_and_load(ref, folder):
    ref.save_pretrained(folder)
    return lmforge.load(folder)


def _rope_pair(kind: str, folder):
    import transformers as tf

    max_positions, rope, _ = ROPE_CASES[kind]
    torch.manual_seed(11)
    cfg = tf.LlamaConfig(**COMMON, max_position_embeddings=max_positions,
                         rope_parameters={**rope, "rope_theta": 10000.0})
    ref = tf.LlamaForCausalLM(cfg).eval()
    return _save_and_load(ref, folder), ref


def _with(model: GPT, **changes) -> GPT:
    """The same weights under a changed config (e.g. without the scaling, to show that the scaling matters)."""
    cfg = GPTConfig.from_dict({**model.config.to_dict(), **changes})
    return GPT.from_state_dict(cfg, model.state_dict()).eval()


def _hf_cached_logits(ref, ids: torch.Tensor, prefill: int) -> torch.Tensor:
    """transformers' logits when ``ids`` is fed as a prompt of ``prefill`` tokens and then one token at a time."""
    from transformers import DynamicCache

    cache = DynamicCache(config=ref.config)
    out = [ref(ids[:, :prefill], cache=cache, use_cache=True).logits]
    for i in range(prefill, ids.shape[1]):
        out.append(ref(ids[:, i : i + 1], cache=cache, use_cache=True).logits)
    return torch.cat(out, 1)


def _our_cached_logits(model: GPT, ids: torch.Tensor, prefill: int) -> torch.Tensor:
    cache = model.new_kv_cache(ids.shape[0], ids.shape[1])
    out = [model(ids[:, :prefill], kv_cache=cache)]
    for i in range(prefill, ids.shape[1]):
        out.append(model(ids[:, i : i + 1], kv_cache=cache))
    return torch.cat(out, 1)


def _hf_greedy(ref, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """transformers' greedy continuation of left-padded prompts (pad id 0)."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = ref.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False, pad_token_id=0)
    return out[:, width:].tolist()


# ---------------------------------------------------------------- RoPE scaling


@pytest.mark.parametrize("kind", list(ROPE_CASES))
def test_scaled_rope_logits_match_transformers(kind, tmp_path):
    lm, ref = _rope_pair(kind, tmp_path)
    assert lm.config.rope_scaling["rope_type"] == kind.split("-")[0]
    torch.manual_seed(12)
    ids = torch.randint(2, VOCAB, (2, ROPE_CASES[kind][2]))
    with torch.no_grad():
        expected = ref(ids).logits
        got = lm.model(ids)
        plain = _with(lm.model, rope_scaling=None)(ids)
    assert (got - expected).abs().max().item() <= 1e-4
    assert (plain - expected).abs().max().item() > 0.1  # the scaling is not a no-op here


@pytest.fixture(scope="module")
def dynamic_pair(tmp_path_factory):
    return _rope_pair("dynamic", tmp_path_factory.mktemp("dynamic"))


def test_dynamic_rope_context_and_cached_decoding_follow_transformers(dynamic_pair):
    """Dynamic NTK rescales beyond max_position_embeddings (16), so lmforge's context is factor (2) times that.
    Keys cached before the sequence outgrew 16 keep their angles, as in transformers' own cached decoding."""
    lm, ref = dynamic_pair
    assert lm.config.block_size == 32
    assert lm.config.rope_scaling["original_max_position_embeddings"] == 16
    torch.manual_seed(13)
    ids = torch.randint(2, VOCAB, (2, 28))
    with torch.no_grad():
        expected = _hf_cached_logits(ref, ids, prefill=10)
        got = _our_cached_logits(lm.model, ids, prefill=10)
        within = lm.model(ids[:, :16])
        full = lm.model(ids)
    assert (got - expected).abs().max().item() <= 1e-4
    # Up to the original length the cached path equals a full recompute; beyond it a full recompute rotates every
    # key with the base of the final length, while cached keys keep theirs.
    assert (got[:, :16] - within).abs().max().item() <= 1e-4
    assert (got[:, 16:] - full[:, 16:]).abs().max().item() > 1e-3


def test_dynamic_rope_greedy_generation_equals_transformers(dynamic_pair):
    lm, ref = dynamic_pair
    prompts = [[5, 17, 33, 2, 90, 41, 7, 64, 12, 3], [8, 29, 71, 44]]  # left-padded batch, grows past 16
    ours = generate_ids(lm.model, prompts, max_new_tokens=18, pad_token_id=0).new_ids
    assert ours == _hf_greedy(ref, prompts, 18)


# ---------------------------------------------------------------- sliding window


@pytest.fixture(scope="module")
def mistral_pair(tmp_path_factory):
    import transformers as tf

    torch.manual_seed(21)
    ref = tf.MistralForCausalLM(tf.MistralConfig(**COMMON, max_position_embeddings=64, sliding_window=4)).eval()
    return _save_and_load(ref, tmp_path_factory.mktemp("mistral")), ref


def test_mistral_sliding_window_logits_match_transformers(mistral_pair):
    lm, ref = mistral_pair
    assert lm.config.sliding_window == 4 and lm.config.layer_types == ["sliding", "sliding"]
    torch.manual_seed(22)
    ids = torch.randint(2, VOCAB, (2, 12))
    with torch.no_grad():
        expected = ref(ids).logits
        got = lm.model(ids)
        full_attention = _with(lm.model, sliding_window=None, layer_types=None)(ids)
    assert (got - expected).abs().max().item() <= 1e-4
    assert (full_attention - expected).abs().max().item() > 0.1


def test_mistral_sliding_window_right_padded_batch(mistral_pair):
    lm, ref = mistral_pair
    torch.manual_seed(23)
    ids = torch.randint(2, VOCAB, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        got = lm.model(ids, mask)
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max().item() <= 1e-4


def test_sliding_window_explicit_path_and_kv_cache(mistral_pair):
    """The explicit path (returning weights) agrees with SDPA, its weights vanish outside the band
    i - 4 < j <= i, and cached decoding equals the full recompute."""
    lm, _ = mistral_pair
    torch.manual_seed(24)
    ids = torch.randint(2, VOCAB, (2, 12))
    with torch.no_grad():
        fast = lm.model(ids)
        slow, weights = lm.model(ids, return_attn=True)
        cached = _our_cached_logits(lm.model, ids, prefill=7)
    assert (slow - fast).abs().max().item() <= 1e-4
    i, j = torch.arange(12)[:, None], torch.arange(12)[None, :]
    outside = (j > i) | (j <= i - 4)
    for w in weights:
        assert w.shape == (2, 4, 12, 12)
        assert torch.all(w[..., outside] == 0)
        assert torch.all(w[..., ~outside] > 0)
    assert (cached - fast).abs().max().item() <= 1e-4


def test_mistral_greedy_generation_beyond_the_window_equals_transformers(mistral_pair):
    lm, ref = mistral_pair
    prompts = [[5, 17, 33, 2, 90, 41], [8, 29, 71]]  # left-padded; 14 new tokens, window 4
    ours = generate_ids(lm.model, prompts, max_new_tokens=14, pad_token_id=0).new_ids
    assert ours == _hf_greedy(ref, prompts, 14)


@pytest.fixture(scope="module")
def qwen2_pair(tmp_path_factory):
    """Qwen2: q/k/v biases only; use_sliding_window with max_window_layers=1 → layer 0 full, layer 1 sliding."""
    import transformers as tf

    torch.manual_seed(31)
    cfg = tf.Qwen2Config(**COMMON, max_position_embeddings=64, use_sliding_window=True, sliding_window=3,
                         max_window_layers=1)
    ref = tf.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises biases to zero: make them count
        for layer in ref.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 0.5)
    return _save_and_load(ref, tmp_path_factory.mktemp("qwen2")), ref


def test_qwen2_logits_and_generation_match_transformers(qwen2_pair):
    lm, ref = qwen2_pair
    cfg = lm.config
    assert cfg.qkv_bias and not cfg.bias and cfg.sliding_window == 3 and cfg.layer_types == ["full", "sliding"]
    torch.manual_seed(32)
    ids = torch.randint(2, VOCAB, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        got = lm.model(ids, mask)
        all_sliding = _with(lm.model, layer_types=["sliding", "sliding"])(ids, mask)
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max().item() <= 1e-4
    assert (all_sliding[real] - expected[real]).abs().max().item() > 0.1  # the full layer is really full
    prompts = [[5, 17, 33, 2, 90], [8, 29]]
    assert generate_ids(lm.model, prompts, max_new_tokens=10, pad_token_id=0).new_ids == _hf_greedy(ref, prompts, 10)


# ---------------------------------------------------------------- export and lmforge folders


def _llama_cfg(**kw) -> GPTConfig:
    return GPTConfig(vocab_size=67, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, norm="rms",
                     mlp="swiglu", pos="rope", bias=False, tie_embeddings=False, ffn_hidden=40, init_std=0.2, **kw)


@pytest.mark.parametrize(
    ("cfg", "model_type"),
    [
        (_llama_cfg(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}),
         "llama"),
        (_llama_cfg(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16}), "llama"),
        (_llama_cfg(rope_scaling={"rope_type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 16}),
         "llama"),
        (_llama_cfg(sliding_window=5, rope_scaling={"rope_type": "linear", "factor": 2.0}), "mistral"),
        (_llama_cfg(sliding_window=5, layer_types=["sliding", "full"], qkv_bias=True), "qwen2"),
        (_llama_cfg(sliding_window=5, n_expert=3, rope_scaling={"rope_type": "yarn", "factor": 2.0}), "mixtral"),
    ],
    ids=["llama-yarn", "llama-llama3", "llama-dynamic", "mistral-window-linear", "qwen2-mixed-layers",
         "mixtral-window-yarn"],
)
def test_export_round_trip_loads_in_transformers_with_identical_logits(cfg, model_type, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(41)
    model = GPT(cfg).eval()
    if cfg.qkv_bias:
        with torch.no_grad():
            for block in model.blocks:
                block.attn.qkv.bias.normal_(0.0, 0.5)
    save_hf(tmp_path, model)
    ref = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert ref.config.model_type == model_type
    ids = torch.randint(0, 67, (2, 24))  # longer than the original context (16) and the window (5)
    with torch.no_grad():
        assert (ref(ids).logits - model(ids)).abs().max().item() <= 1e-5
    back = lmforge.load(tmp_path)
    assert back.config.rope_scaling == cfg.rope_scaling
    assert (back.config.sliding_window, back.config.layer_types) == (cfg.sliding_window, cfg.layer_types)
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids), model(ids))


def test_lmforge_folder_keeps_scaling_and_window(tmp_path):
    cfg = _llama_cfg(sliding_window=6, rope_scaling={"rope_type": "yarn", "factor": 2.0, "beta_fast": 8})
    model = GPT(cfg).eval()
    save_model(tmp_path, model)
    back = lmforge.load(tmp_path)
    assert back.config == model.config
    ids = torch.randint(0, 67, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids), model(ids))


@pytest.mark.parametrize(
    ("rope", "match"),
    [
        ({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [2.0]}, "rope type 'longrope'"),
        ({"rope_type": "linear"}, "needs the field 'factor'"),
        ({"rope_type": "linear", "factor": 2.0, "low_freq_factor": 1.0}, r"unknown field\(s\) \['low_freq_factor'\]"),
        ({"rope_type": "linear", "factor": 2.0, "partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    ],
)
def test_unsupported_rope_parameters_name_the_problem(rope, match):
    hf = {"model_type": "llama", "vocab_size": 10, "max_position_embeddings": 32, "num_hidden_layers": 1,
          "num_attention_heads": 2, "hidden_size": 8, "intermediate_size": 16, "rope_parameters": rope}
    with pytest.raises(ConfigError, match=match) as info:
        config_from_hf(hf, "some/config.json")
    assert "some/config.json" in str(info.value)


def test_bad_window_config_is_a_config_error():
    with pytest.raises(ConfigError, match="sliding_window"):
        _llama_cfg(sliding_window=0)
    with pytest.raises(ConfigError, match="layer_types"):
        _llama_cfg(sliding_window=4, layer_types=["sliding"])
    with pytest.raises(ConfigError, match="rope_scaling"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8,
                  rope_scaling={"rope_type": "linear", "factor": 2.0})
