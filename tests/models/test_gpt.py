"""GPT invariants: causality, KV cache = full recompute, padding invariance, training lowers the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import ConfigError, InputError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.presets import model_config

TINY = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32)
VARIANTS = {
    "gpt2": GPTConfig(**TINY),
    "llama-gqa": GPTConfig(**TINY, n_kv_head=2, norm="rms", mlp="swiglu", pos="rope", bias=False, tie_embeddings=False),
    "mixtral": GPTConfig(**TINY, n_kv_head=1, norm="rms", mlp="swiglu", pos="rope", bias=False, n_expert=4),
}


@pytest.fixture(params=list(VARIANTS))
def model(request) -> GPT:
    torch.manual_seed(0)
    return GPT(VARIANTS[request.param]).eval()


def test_logits_shape_and_causality(model):
    ids = torch.randint(0, 97, (2, 10))
    logits = model(ids)
    assert logits.shape == (2, 10, 97)
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 97
    torch.testing.assert_close(model(changed)[:, :6], logits[:, :6])


def test_kv_cache_decoding_equals_full_recompute(model):
    ids = torch.randint(0, 97, (2, 12))
    full = model(ids)
    cache = model.new_kv_cache(2, 16)
    steps = [model(ids[:, :5], kv_cache=cache)]
    steps.append(model(ids[:, 5:8], kv_cache=cache))  # a multi-token chunk on top of a non-empty cache
    for i in range(8, 12):
        steps.append(model(ids[:, i : i + 1], kv_cache=cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_with_mask_positions_gives_the_unpadded_logits(model):
    ids = torch.randint(1, 97, (1, 7))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.tensor([[0, 0, 0] + [1] * 7])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    torch.testing.assert_close(model(padded, mask, positions)[:, 3:], model(ids), atol=1e-5, rtol=1e-5)


def test_return_attn_gives_causal_weights_and_same_logits(model):
    ids = torch.randint(0, 97, (1, 6))
    logits, attns = model(ids, return_attn=True)
    torch.testing.assert_close(logits, model(ids), atol=1e-5, rtol=1e-5)
    assert len(attns) == 2 and attns[0].shape == (1, 4, 6, 6)
    assert torch.all(attns[1][0].triu(1) == 0)


def test_last_only_matches_last_position(model):
    ids = torch.randint(0, 97, (2, 5))
    torch.testing.assert_close(model(ids, last_only=True), model(ids)[:, -1:])


def test_training_lowers_the_loss_and_moe_reports_aux_loss():
    torch.manual_seed(0)
    model = GPT(VARIANTS["mixtral"]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = torch.arange(33).repeat(4, 1) % 97  # a fixed sequence to memorise
    losses = []
    for _ in range(30):
        logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 97), data[:, 1:].reshape(-1))
        assert model.aux_loss is not None and model.aux_loss.item() > 0
        (loss + model.config.router_aux_loss_coef * model.aux_loss).backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_tied_embeddings_share_storage():
    model = GPT(VARIANTS["gpt2"])
    assert model.lm_head.weight is model.wte.weight
    assert GPT(VARIANTS["llama-gqa"]).lm_head.weight is not GPT(VARIANTS["llama-gqa"]).wte.weight


def test_bf16_autocast_runs():
    model = GPT(VARIANTS["llama-gqa"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randint(0, 97, (2, 8)))
    assert torch.isfinite(logits.float()).all()


def test_errors_name_the_problem():
    model = GPT(VARIANTS["gpt2"])
    with pytest.raises(InputError, match="context window"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ConfigError, match="pos"):
        GPTConfig(**TINY, pos="alibi")
    with pytest.raises(ConfigError, match="n_layer"):
        GPTConfig(n_layer=0)
    with pytest.raises(ConfigError, match="unknown GPT config field"):
        GPTConfig.from_dict({"n_layers": 3})


def test_presets_and_config_round_trip():
    cfg = model_config("smollm2-135m")
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.head_dim == 64 and cfg.n_kv_head == 3
    assert GPT(model_config("tiny")).num_parameters() > 0
