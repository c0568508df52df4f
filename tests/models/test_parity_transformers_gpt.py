"""Logit parity with transformers on tiny random GPT-2, Llama (GQA) and Mixtral checkpoints built from configs
and saved with save_pretrained; export back to the HF layout loads in transformers with the same logits."""

from __future__ import annotations

import pytest
import torch

import lmforge
from lmforge.io import save_hf
from lmforge.models.gpt import GPT, GPTConfig

pytestmark = pytest.mark.xdist_group("hf_tiny_gpt")


# transformers' default init (std 0.02) leaves attention nearly uniform, so a wrong scale, mask or position moves
# the logits by about the tolerance; at std 0.3 each of those is far outside it (test_a_wrong_variant_is_far).
INIT_STD = 0.3
TOLERANCE = 1e-4


def _hf_model(kind: str, **switch):
    import transformers as tf

    torch.manual_seed({"gpt2": 0, "llama": 1, "mixtral": 2, "mistral": 3}[kind])
    if kind == "gpt2":
        cfg = tf.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=101, n_positions=64, bos_token_id=0,
                            eos_token_id=1, initializer_range=INIT_STD, **switch)
        return tf.GPT2LMHeadModel(cfg)
    common = dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
                  intermediate_size=48, vocab_size=101, max_position_embeddings=64, bos_token_id=0, eos_token_id=1,
                  rope_theta=5000.0, initializer_range=INIT_STD)
    common.update(switch)
    if kind == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(**common))
    if kind == "mistral":
        return tf.MistralForCausalLM(tf.MistralConfig(**common, sliding_window=None))
    return tf.MixtralForCausalLM(tf.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2))


@pytest.fixture(scope="module", params=["gpt2", "llama", "mistral", "mixtral"])
def pair(request, tmp_path_factory):
    """(lmforge LM, transformers model) loaded from the same save_pretrained folder."""
    ref = _hf_model(request.param).eval()
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    return lmforge.load(folder), ref


def test_config_translation(pair):
    lm, ref = pair
    assert lm.config.n_layer == 2 and lm.config.vocab_size == 101
    if ref.config.model_type != "gpt2":
        assert lm.config.n_kv_head == 2 and lm.config.rope_theta == 5000.0
    assert lm.eos_token_ids == [1]


def test_logits_right_padded_batch(pair):
    lm, ref = pair
    torch.manual_seed(3)
    ids = torch.randint(2, 101, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        got = lm.model(ids, mask)
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max().item() <= TOLERANCE


# A switch flipped in the reference: what lmforge's logits would be with that bug. Each must be far outside the
# tolerance, or the parity tests could not see it.
WRONG = {"gpt2": {"scale_attn_weights": False}, "llama": {"rope_theta": 10000.0},
         "mistral": {"rope_theta": 10000.0}, "mixtral": {"rope_theta": 10000.0}}


def test_a_wrong_variant_is_far(pair):
    lm, ref = pair
    kind = ref.config.model_type
    wrong = _hf_model(kind, **WRONG[kind]).eval()
    wrong.load_state_dict(ref.state_dict())
    torch.manual_seed(3)
    ids = torch.randint(2, 101, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    real = mask.bool()
    with torch.no_grad():
        got = lm.model(ids, mask)
        far = (wrong(ids, attention_mask=mask).logits - got)[real].abs().max().item()
    assert far > 100 * TOLERANCE, far


def test_logits_do_not_see_the_future(pair):
    """Changing the last token leaves every earlier position's logits exactly as they were (a causal mask shifted
    by one would let the position before it see it)."""
    lm, _ = pair
    torch.manual_seed(6)
    ids = torch.randint(2, 101, (2, 10))
    other = ids.clone()
    other[:, -1] = (ids[:, -1] + 7) % 99 + 2
    with torch.no_grad():
        a, b = lm.model(ids), lm.model(other)
    assert (a[:, :-1] - b[:, :-1]).abs().max().item() <= 1e-6
    assert (a[:, -1] - b[:, -1]).abs().max().item() > 100 * TOLERANCE


def test_logits_left_padded_batch_with_generate_positions(pair):
    lm, ref = pair
    torch.manual_seed(4)
    ids = torch.randint(2, 101, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :6] = 0
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # what transformers' generate passes
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, position_ids=positions).logits
        got = lm.model(ids, mask, positions)
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max().item() <= TOLERANCE


def test_kv_cache_logits_equal_full_recompute(pair):
    lm, _ = pair
    ids = torch.randint(2, 101, (2, 10))
    with torch.no_grad():
        full = lm.model(ids)
        cache = lm.model.new_kv_cache(2, 10)
        steps = [lm.model(ids[:, :6], kv_cache=cache)] + [lm.model(ids[:, i : i + 1], kv_cache=cache)
                                                          for i in range(6, 10)]
    assert (torch.cat(steps, 1) - full).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "cfg",
    [
        GPTConfig(vocab_size=67, block_size=32, n_layer=2, n_head=2, n_embd=16),
        GPTConfig(vocab_size=67, block_size=32, n_layer=2, n_head=4, n_kv_head=1, n_embd=16, norm="rms", mlp="swiglu",
                  pos="rope", bias=False, tie_embeddings=False, ffn_hidden=40),
        GPTConfig(vocab_size=67, block_size=32, n_layer=1, n_head=2, n_embd=16, norm="rms", mlp="swiglu", pos="rope",
                  bias=False, n_expert=3, n_expert_per_tok=2, ffn_hidden=24),
    ],
    ids=["gpt2", "llama-mqa", "mixtral"],
)
def test_export_loads_in_transformers_with_identical_logits(cfg, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(5)
    model = GPT(cfg).eval()
    with torch.no_grad():  # non-trivial norms, so a swapped weight would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.2)
    save_hf(tmp_path, model, generation_config={"eos_token_id": 2})
    ref = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 67, (2, 12))
    with torch.no_grad():
        assert (ref(ids).logits - model(ids)).abs().max().item() <= 1e-5
    back = lmforge.load(tmp_path)  # and the exported folder loads in lmforge again, identically
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids), model(ids))
    assert back.eos_token_ids == [2]


def test_pytorch_model_bin_folder_loads(tmp_path):
    ref = _hf_model("llama").eval()
    ref.save_pretrained(tmp_path, safe_serialization=False)
    if not (tmp_path / "pytorch_model.bin").exists():
        torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink(missing_ok=True)
    lm = lmforge.load(tmp_path)
    ids = torch.randint(2, 101, (1, 8))
    with torch.no_grad():
        assert (lm.model(ids) - ref(ids).logits).abs().max().item() <= TOLERANCE
