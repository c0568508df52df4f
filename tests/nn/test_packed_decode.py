"""The fused decoding step of packed Llama-shaped blocks (lmforge.nn.quantized.packed_decode_blocks: one numba call
per block and step, up to 8 rows) against the ordinary path (the same packed layers called one torch op at a time)."""

from __future__ import annotations

import copy

import pytest
import torch

import lmforge.models.gpt as gpt_module
from lmforge.generate import positions_from_mask
from lmforge.io.quantize import quantize_model
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn import _quantized_numba as kernels
from lmforge.nn.quantized import (
    DECODE_MAX_ROWS,
    TILE,
    QuantizedLinear,
    use_int8_activations,
    use_torch_bf16_int4,
)


def packed_gpt(seed: int, mixed: bool = False, **config) -> GPT:
    """A tiny GPT (Llama-shaped unless ``config`` says otherwise) quantized to Q4_1 (``mixed``: each block's four
    matrices in four formats, 8- and 4-bit, groups of 32 and 64). Weights ~10× the default init, so logits span
    ~10 and attention is peaked: a wrong rotation, window, head mapping or mask moves logits by far more than the
    tolerance."""
    torch.manual_seed(seed)
    cfg = dict(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=128, norm="rms",
               mlp="swiglu", pos="rope", bias=False, init_std=0.2)
    model = GPT(GPTConfig(**{**cfg, **config})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):  # GPT's init zeroes biases: make them count
                p.normal_(0, 1)
    if mixed:
        for block in model.blocks:
            fc = "gate_up" if block.mlp.activation == "swiglu" else "fc"
            for parent, name, qtype, group in ((block.attn, "qkv", "q8_0", None), (block.attn, "proj", "int8", None),
                                               (block.mlp, fc, "int4", 64), (block.mlp, "proj", "q4_0", None)):
                linear = getattr(parent, name)
                setattr(parent, name, QuantizedLinear.from_float(linear.weight, qtype, group, bias=linear.bias))
    quantize_model(model, "q4_1")
    return model


def decode(model: GPT, prompt: list[int], steps: int, fused: bool, monkeypatch: pytest.MonkeyPatch
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``prompt`` as a prefill, then its last ``steps`` ids fed again one step at a time (the same inputs on every
    path, whatever the logits) → (logits of every step ``(steps, V)``, the cache's keys)."""
    with monkeypatch.context() as patch:
        if not fused:
            patch.setattr(gpt_module, "packed_decode_blocks", lambda *args: None)
        cache = model.new_kv_cache(1, len(prompt) + steps)
        rows = []
        with torch.inference_mode():
            model(torch.tensor([prompt]), kv_cache=cache, last_only=True)
            for token in prompt[-steps:]:
                rows.append(model(torch.tensor([[token]]), kv_cache=cache, last_only=True)[0, -1])
        return torch.stack(rows), cache.k.clone()


def count_fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = kernels.decode_block

    def counted(*args):  # noqa: ANN002
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(kernels, "decode_block", counted)
    return calls


CASES = {
    "grouped-query heads": dict(),
    "mixed formats, qkv bias, sliding window": dict(mixed=True, qkv_bias=True, sliding_window=5,
                                                    layer_types=["sliding", "full"]),
    "one key/value head, no grouping": dict(n_kv_head=4, n_head=4),
    "GPT-2 shape: LayerNorm, tanh GELU, learned positions, biases": dict(
        norm="layer", mlp="gelu_tanh", pos="learned", bias=True, n_kv_head=4, ffn_hidden=256),
    "exact GELU, LayerNorm without bias, odd head size": dict(
        norm="layer", mlp="gelu", pos="learned", n_head=32, n_kv_head=32, head_dim=3, ffn_hidden=192),
    "ReLU (the original Transformer's)": dict(mlp="relu", ffn_hidden=192),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_step_equals_the_layer_by_layer_path(case: str, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    model = packed_gpt(0, **CASES[case])
    prompt = [3, 141, 59, 26, 53, 58, 97, 93, 238, 46, 26, 43, 38, 32, 79, 50, 28, 84, 19, 71]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        want, want_k = decode(model, prompt, 14, fused=False, monkeypatch=monkeypatch)
        calls = count_fused_calls(monkeypatch)
        got, got_k = decode(model, prompt, 14, fused=True, monkeypatch=monkeypatch)
    finally:
        torch.set_num_threads(before)
    assert calls[0] == 14 * model.config.n_layer  # every step, every block took the fused path
    assert want.abs().max() > 5  # logits big enough that a wrong rotation / window / head is far off
    torch.testing.assert_close(got, want, rtol=0, atol=2e-4 * want.abs().max().item())
    torch.testing.assert_close(got_k, want_k, rtol=0, atol=1e-4 * want_k.abs().max().item())


def test_fused_step_keeps_the_int8_activation_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The opt-in integer dot products apply in the fused step too. Its outputs cannot equal the layer-by-layer
    ones closely (an activation one float rounding apart may round to the next int8, which moves the logits by
    as much as the switch itself does), so both are held to the float path: as close to it as each other."""
    model = packed_gpt(1, init_std=0.02)
    prompt = [3, 141, 59, 26, 53, 58, 97, 93, 238, 46, 26, 43]
    exact, _ = decode(model, prompt, 8, fused=True, monkeypatch=monkeypatch)
    use_int8_activations(model)
    want, _ = decode(model, prompt, 8, fused=False, monkeypatch=monkeypatch)
    got, _ = decode(model, prompt, 8, fused=True, monkeypatch=monkeypatch)
    moved, moved_fused = (want - exact).abs().max().item(), (got - exact).abs().max().item()
    assert 1e-3 * exact.abs().max().item() < moved < 0.02 * exact.abs().max().item()
    assert 0.25 * moved < moved_fused < 2 * moved  # the switch took, and no further from the float path


def decode_rows(model: GPT, how: str, fused: bool, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """Three rows decoded together, 10 teacher-forced steps → logits ``(steps, 3, V)``. ``how``: ``"uniform"`` (one
    prompt length), ``"padded"`` (left padding and an attention mask, as ``generate`` batches prompts) or
    ``"per-row"`` (each row prefilled in its own slot, then decoded with per-row lengths, as the server does)."""
    prompts = [[5, 17, 2, 88, 31, 7, 9], [40, 41, 42], [250, 3, 3, 12, 1]]
    feed = torch.tensor([[11 + 7 * r + 3 * k for r in range(3)] for k in range(10)])  # (steps, 3)
    with monkeypatch.context() as patch, torch.inference_mode():
        if not fused:
            patch.setattr(gpt_module, "packed_decode_blocks", lambda *args: None)
        rows = []
        if how == "per-row":
            cache = model.new_kv_cache(3, 20)
            for r, prompt in enumerate(prompts):
                model(torch.tensor([prompt]), kv_cache=cache.slot(r))
            lengths = [len(p) for p in prompts]
            for token in feed:
                rows.append(model(token[:, None], kv_cache=cache.rows(lengths), last_only=True)[:, -1])
                lengths = [n + 1 for n in lengths]
            return torch.stack(rows)
        if how == "uniform":
            prompts = [p[:3] for p in prompts]
        t = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (t - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (t - len(p)) + [1] * len(p) for p in prompts])
        cache = model.new_kv_cache(3, t + len(feed))
        if how == "uniform":
            model(ids, kv_cache=cache)
            for token in feed:
                rows.append(model(token[:, None], kv_cache=cache, last_only=True)[:, -1])
            return torch.stack(rows)
        model(ids, mask, positions_from_mask(mask), kv_cache=cache)
        positions = mask.sum(-1)
        for token in feed:
            mask = torch.cat([mask, torch.ones(3, 1, dtype=mask.dtype)], dim=1)
            rows.append(model(token[:, None], mask, positions[:, None], kv_cache=cache, last_only=True)[:, -1])
            positions = positions + 1
        return torch.stack(rows)


@pytest.mark.parametrize("how", ["uniform", "padded", "per-row"])
def test_fused_step_decodes_several_rows_as_the_layer_by_layer_path(how: str, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    model = packed_gpt(3, mixed=True, sliding_window=4, layer_types=["sliding", "full"])
    want = decode_rows(model, how, fused=False, monkeypatch=monkeypatch)
    calls = count_fused_calls(monkeypatch)
    got = decode_rows(model, how, fused=True, monkeypatch=monkeypatch)
    assert calls[0] == 10 * model.config.n_layer
    torch.testing.assert_close(got, want, rtol=0, atol=2e-4 * want.abs().max().item())


def test_the_ordinary_path_serves_what_the_fused_step_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """More rows than the packed kernels take, float models, blocks with forward hooks and torch's bfloat16 opt-in
    decode layer by layer (no fused call)."""
    calls = count_fused_calls(monkeypatch)
    model = packed_gpt(2)
    rows = DECODE_MAX_ROWS + 1
    cache = model.new_kv_cache(rows, 8)
    with torch.inference_mode():
        model(torch.ones(rows, 2, dtype=torch.long), kv_cache=cache)
        model(torch.ones(rows, 1, dtype=torch.long), kv_cache=cache)
        float_model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32, norm="rms",
                                    mlp="swiglu", pos="rope")).eval()
        cache = float_model.new_kv_cache(1, 8)
        float_model(torch.tensor([[1, 2]]), kv_cache=cache)
        float_model(torch.tensor([[3]]), kv_cache=cache)
    assert calls[0] == 0
    seen = []
    handle = model.blocks[1].mlp.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    decode(model, [1, 2, 3], 2, fused=True, monkeypatch=monkeypatch)
    handle.remove()
    assert calls[0] == 0 and len(seen) == 3  # a hook on a block's part sees every step (prefill + 2)
    use_torch_bf16_int4(model)
    decode(model, [1, 2, 3], 2, fused=True, monkeypatch=monkeypatch)
    assert calls[0] == 0


def test_row_tiles_have_the_kernels_lane_count() -> None:
    assert TILE == kernels.LANES  # the kernels unroll over LANES rows; tiles of another size would be misread


def test_a_deep_copy_reads_its_own_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numpy views and fused-step plans made for a model are not carried into a copy of it: after both have been
    used, the copy's weights are changed in place and both paths of the copy must see the change."""
    model = packed_gpt(4)
    prompt = [3, 141, 59, 26, 53, 58, 97]
    decode(model, prompt, 3, fused=True, monkeypatch=monkeypatch)
    decode(model, prompt, 3, fused=False, monkeypatch=monkeypatch)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for layer in twin.modules():
            if isinstance(layer, QuantizedLinear):
                layer.scale.mul_(0.5)
    before, _ = decode(model, prompt, 3, fused=True, monkeypatch=monkeypatch)
    fused, _ = decode(twin, prompt, 3, fused=True, monkeypatch=monkeypatch)
    layered, _ = decode(twin, prompt, 3, fused=False, monkeypatch=monkeypatch)
    x = torch.randn(1, 128)
    qkv = twin.blocks[0].attn.qkv
    torch.testing.assert_close(qkv(x), x @ qkv.dequantize().T, rtol=0, atol=1e-4 * qkv(x).abs().max().item())
    assert (fused - before).abs().max() > 0.1
    torch.testing.assert_close(fused, layered, rtol=0, atol=2e-4 * layered.abs().max().item())
