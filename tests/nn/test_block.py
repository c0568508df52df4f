"""Block (pre-/post-norm) vs torch.nn.TransformerEncoderLayer; norms, positions, feed-forward, MoE invariants."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lmforge.errors import ConfigError
from lmforge.nn import Block, BlockConfig, FeedForward, MoE, RMSNorm, Rotary, apply_rotary, sinusoidal_table
from lmforge.nn.moe import load_balancing_loss


def _copy_from_torch_layer(ours: Block, ref: nn.TransformerEncoderLayer) -> None:
    with torch.no_grad():
        ours.attn.qkv.weight.copy_(ref.self_attn.in_proj_weight)
        ours.attn.qkv.bias.copy_(ref.self_attn.in_proj_bias)
        ours.attn.proj.load_state_dict(ref.self_attn.out_proj.state_dict())
        ours.mlp.fc.load_state_dict(ref.linear1.state_dict())
        ours.mlp.proj.load_state_dict(ref.linear2.state_dict())
        ours.norm_attn.load_state_dict(ref.norm1.state_dict())
        ours.norm_mlp.load_state_dict(ref.norm2.state_dict())


@pytest.mark.parametrize("prenorm", [False, True])
def test_block_matches_torch_transformer_encoder_layer(prenorm):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        32, 4, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=prenorm, layer_norm_eps=1e-12
    ).eval()
    for p in ref.parameters():  # non-trivial norms too
        nn.init.normal_(p, 0.0, 0.2) if p.dim() == 1 else None
    ours = Block(BlockConfig(32, 4, ffn_hidden=64, mlp="gelu", norm_eps=1e-12, prenorm=prenorm)).eval()
    _copy_from_torch_layer(ours, ref)
    x = torch.randn(2, 6, 32)
    pad = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    expected = ref(x, src_key_padding_mask=pad == 0)
    got, _ = ours(x, mask=pad.bool()[:, None, None, :])
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :4], expected[1, :4], atol=1e-5, rtol=1e-5)


def test_rmsnorm_matches_torch():
    x = torch.randn(3, 5, 16)
    ours, ref = RMSNorm(16, eps=1e-6), nn.RMSNorm(16, eps=1e-6)
    nn.init.normal_(ours.weight)
    ref.weight.data.copy_(ours.weight.data)
    torch.testing.assert_close(ours(x), ref(x))


def test_sinusoidal_table_formula():
    t = sinusoidal_table(50, 16)
    pos, i = 37, 3
    assert t[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-5)
    assert t[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    rot = Rotary(8, theta=10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq: int, pk: int) -> float:
        cq, sq = rot(torch.tensor([[pq]]))
        ck, sk = rot(torch.tensor([[pk]]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item()

    assert score(5, 2) == pytest.approx(score(103, 100), abs=1e-4)
    assert score(0, 0) == pytest.approx((q * k).sum().item(), abs=1e-5)  # angle 0 is the identity
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-4)


def test_rope_frequencies_stay_float32_under_bf16():
    rot = Rotary(64, 500000.0).to(torch.bfloat16)
    assert rot.inv_freq.dtype == torch.float32


def test_swiglu_formula():
    ff = FeedForward(8, 12, "swiglu", bias=False)
    x = torch.randn(2, 3, 8)
    gate, up = ff.gate_up.weight.split(12)
    expected = (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ ff.proj.weight.T
    torch.testing.assert_close(ff(x), expected)


def test_moe_equals_per_token_loop_and_balances():
    torch.manual_seed(0)
    moe = MoE(8, 16, n_expert=4, n_expert_per_tok=2).train()
    x = torch.randn(2, 5, 8)
    out = moe(x)
    flat = x.reshape(-1, 8)
    probs = torch.softmax(moe.router(flat), -1)
    for n in range(flat.shape[0]):
        w, idx = probs[n].topk(2)
        w = w / w.sum()
        expected = sum(w[j] * moe.experts[int(idx[j])](flat[n : n + 1])[0] for j in range(2))
        torch.testing.assert_close(out.reshape(-1, 8)[n], expected, atol=1e-5, rtol=1e-5)
    assert moe.aux_loss is not None and moe.aux_loss.item() > 0
    out.sum().backward()
    assert moe.router.weight.grad is not None  # the router learns through the mixing weights


def test_load_balancing_loss_matches_transformers():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    torch.manual_seed(1)
    logits = torch.randn(12, 4)
    probs = torch.softmax(logits, -1)
    _, idx = probs.topk(2, -1)
    expected = load_balancing_loss_func((logits,), num_experts=4, top_k=2)
    torch.testing.assert_close(load_balancing_loss(probs, idx, 4), expected)
    # a perfectly even router scores exactly k
    even = torch.full((4, 2), 0.5)
    assert load_balancing_loss(even, torch.tensor([[0], [1], [0], [1]]), 2).item() == pytest.approx(1.0)


def test_bad_block_config_is_a_config_error():
    with pytest.raises(ConfigError, match="n_kv_head"):
        BlockConfig(32, 4, n_kv_head=3)
    with pytest.raises(ConfigError, match="mlp"):
        BlockConfig(32, 4, mlp="relu6")
