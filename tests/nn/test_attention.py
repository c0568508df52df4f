"""Attention: SDPA fast path vs explicit path, GQA, causality, KV cache, and parity with torch.nn.MultiheadAttention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lmforge.nn import Attention, KVCache, build_mask
from lmforge.nn.positions import Rotary


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_fast_path_equals_explicit_path(n_kv_head):
    attn = Attention(32, 4, n_kv_head).eval()
    x = torch.randn(2, 7, 32)
    pad = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
    mask = build_mask(pad, 7, 7, causal=True)
    for kw in (dict(is_causal=True), dict(mask=mask)):
        fast, none = attn(x, **kw)
        slow, weights = attn(x, return_attn=True, **kw)
        assert none is None
        torch.testing.assert_close(fast[0], slow[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast[1, 2:], slow[1, 2:], atol=1e-5, rtol=1e-5)
        assert weights.shape == (2, 4, 7, 7)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))
        assert torch.all(weights[0].triu(1) == 0)  # causal: nothing attends to the future


def test_gqa_equals_mha_with_repeated_kv_heads():
    gqa = Attention(32, 4, 2).eval()
    mha = Attention(32, 4, 4).eval()
    d = 8
    q, k, v = gqa.qkv.weight.split((32, 16, 16))
    rep = lambda w: w.view(2, d, 32).repeat_interleave(2, dim=0).reshape(32, 32)  # noqa: E731
    qb, kb, vb = gqa.qkv.bias.split((32, 16, 16))
    repb = lambda b: b.view(2, d).repeat_interleave(2, dim=0).reshape(32)  # noqa: E731
    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat([q, rep(k), rep(v)]))
        mha.qkv.bias.copy_(torch.cat([qb, repb(kb), repb(vb)]))
        mha.proj.load_state_dict(gqa.proj.state_dict())
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(gqa(x, is_causal=True)[0], mha(x, is_causal=True)[0], atol=1e-5, rtol=1e-5)


def test_causal_output_ignores_the_future():
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(attn(x, is_causal=True)[0][:, :4], attn(y, is_causal=True)[0][:, :4])


def test_matches_torch_multihead_attention():
    """Independent reference: torch's own nn.MultiheadAttention (fused in_proj, same q/k/v row order)."""
    ref = nn.MultiheadAttention(24, 3, batch_first=True).eval()
    ours = Attention(24, 3).eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.in_proj_weight)
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.proj.weight.copy_(ref.out_proj.weight)
        ours.proj.bias.copy_(ref.out_proj.bias)
    x = torch.randn(2, 6, 24)
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expected, expected_w = ref(x, x, x, attn_mask=causal, average_attn_weights=False)
    got, got_w = ours(x, is_causal=True, return_attn=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_w, expected_w, atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_torch_multihead_attention():
    ref = nn.MultiheadAttention(16, 2, batch_first=True, kdim=16, vdim=16).eval()
    ours = Attention(16, 2, cross=True).eval()
    wq, wk, wv = ref.in_proj_weight.split(16)
    bq, bk, bv = ref.in_proj_bias.split(16)
    with torch.no_grad():
        ours.q.weight.copy_(wq)
        ours.q.bias.copy_(bq)
        ours.kv.weight.copy_(torch.cat([wk, wv]))
        ours.kv.bias.copy_(torch.cat([bk, bv]))
        ours.proj.load_state_dict(ref.out_proj.state_dict())
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    memory_pad = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    expected, _ = ref(x, memory, memory, key_padding_mask=memory_pad == 0)
    got, _ = ours(x, context=memory, mask=memory_pad.bool()[:, None, None, :])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_kv_cache_decoding_equals_full_recompute():
    attn = Attention(32, 4, 2).eval()
    rotary = Rotary(8)
    x = torch.randn(2, 9, 32)
    pos = torch.arange(9)[None].expand(2, 9)
    full, _ = attn(x, is_causal=True, rope=rotary(pos))
    cache = KVCache(1, 2, 2, 16, 8)
    out = [attn(x[:, :5], is_causal=True, rope=rotary(pos[:, :5]), kv_cache=cache)[0]]
    cache.advance(5)
    for i in range(5, 9):
        out.append(attn(x[:, i : i + 1], rope=rotary(pos[:, i : i + 1]), kv_cache=cache)[0])
        cache.advance(1)
    torch.testing.assert_close(torch.cat(out, dim=1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_overflow_is_an_input_error():
    from lmforge.errors import InputError

    cache = KVCache(1, 1, 1, 4, 2)
    with pytest.raises(InputError, match="KV cache full"):
        cache.update(0, torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))


def test_build_mask_padding_and_causality():
    m = build_mask(torch.tensor([[0, 1, 1, 1]]), 2, 4, causal=True)[0, 0]
    # the last 2 positions query; position 0 is padding
    assert m.tolist() == [[False, True, True, False], [False, True, True, True]]
    assert build_mask(None, 3, 3, causal=False) is None
