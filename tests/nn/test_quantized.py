"""Quantized layers: every format's reference dequantizer against gguf's (the outside reference), the exact
GGUF ↔ nibbles+scales conversion, and every fast path (packed kernel, dequantize-then-GEMM) against reference
dequantize-then-matmul on odd shapes and extreme scales."""

import numpy as np
import pytest
import torch
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize

from lmforge.errors import ConfigError
from lmforge.nn.quantized import (
    DECODE_MAX_ROWS,
    FORMATS,
    GGUF_QTYPES,
    QuantizedEmbedding,
    QuantizedLinear,
    dequantize_gguf_reference,
    dequantize_reference,
    from_gguf_blocks,
    quantize_weight,
    to_gguf_blocks,
)

# byte offsets of the fp16 fields inside one block of each format
F16_FIELDS = {"q8_0": [0], "q4_0": [0], "q4_1": [0, 2], "q4_k": [0, 2], "q6_k": [208]}


def random_blocks(qtype: str, rows: int, blocks_per_row: int, seed: int, extreme: bool = False) -> np.ndarray:
    """Random bytes for every quant field; fp16 fields finite, spanning 1e-7 (subnormal) .. 6e4 when extreme."""
    rng = np.random.default_rng(seed)
    fmt = FORMATS[qtype]
    raw = rng.integers(0, 256, (rows, blocks_per_row, fmt.block_bytes), dtype=np.uint8)
    for offset in F16_FIELDS[qtype]:
        if extreme:
            values = rng.choice([1e-7, 3e-5, 0.0, 1.0, 6e4], size=(rows, blocks_per_row, 1)) * rng.choice([-1, 1])
        else:
            values = rng.standard_normal((rows, blocks_per_row, 1)) * 0.05
        raw[..., offset:offset + 2] = values.astype(np.float16).view(np.uint8)
    return raw.reshape(rows, -1)


def matmul_tolerance(x: torch.Tensor, w: torch.Tensor) -> float:
    """float32 rounding of a length-K dot product, scaled by |x|·|w| (sum order differs between paths)."""
    return 1e-5 * float((x.abs() @ w.abs().T).max()) + 1e-30


@pytest.mark.parametrize("qtype", GGUF_QTYPES)
@pytest.mark.parametrize("extreme", [False, True])
def test_gguf_reference_dequantize_and_exact_round_trip(qtype: str, extreme: bool) -> None:
    raw = random_blocks(qtype, rows=7, blocks_per_row=3, seed=1 + extreme, extreme=extreme)
    theirs = dequantize(raw, GGMLQuantizationType[qtype.upper()]).reshape(7, -1)
    ours = dequantize_gguf_reference(raw, qtype)
    np.testing.assert_array_equal(ours, theirs)
    parts = from_gguf_blocks(raw, qtype)
    np.testing.assert_array_equal(to_gguf_blocks(parts, qtype), raw)  # identical bytes back
    tparts = {k: torch.from_numpy(v) for k, v in parts.items()}
    again = dequantize_reference(tparts["q"], tparts["scale"], tparts.get("zero"), FORMATS[qtype].bits)
    np.testing.assert_array_equal(again.numpy(), theirs)


@pytest.mark.parametrize("qtype", GGUF_QTYPES)
@pytest.mark.parametrize("rows", [1, 3, DECODE_MAX_ROWS + 5])  # packed kernel (1, 3) and dequantize + GEMM
def test_gguf_layer_matmul_equals_reference(qtype: str, rows: int) -> None:
    n_out = 37  # odd, not a multiple of 16
    raw = random_blocks(qtype, rows=n_out, blocks_per_row=2, seed=3, extreme=(rows == 3))
    layer = QuantizedLinear.from_gguf(raw, qtype, in_features=2 * FORMATS[qtype].block)
    w = torch.from_numpy(dequantize(raw, GGMLQuantizationType[qtype.upper()]).reshape(n_out, -1))
    x = torch.randn(rows, w.shape[1], generator=torch.Generator().manual_seed(rows))
    got, want = layer(x), x.double() @ w.double().T
    torch.testing.assert_close(got.double(), want, rtol=0, atol=matmul_tolerance(x, w))
    torch.testing.assert_close(layer.dequantize(), w, rtol=0, atol=0)


@pytest.mark.parametrize("qtype,group", [("int8", None), ("int4", 32), ("int4", 64), ("int4", 128), ("int4", 256),
                                         ("q8_0", None), ("q4_0", None), ("q4_1", None)])
def test_quantize_then_matmul(qtype: str, group: int | None) -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(45, 512, generator=gen) * torch.logspace(-3, 2, 45)[:, None]  # rows of very different scale
    b = torch.randn(45, generator=gen)
    layer = QuantizedLinear.from_float(w, qtype, group, bias=b)
    parts = layer.parts()
    ref = dequantize_reference(parts["q"], parts["scale"], parts.get("zero"), layer.bits)
    assert (ref - w).abs().max() <= (w.abs().amax() * (0.5 / 7 if layer.bits == 4 else 0.5 / 127)) * 1.001
    for rows in (1, 2, DECODE_MAX_ROWS + 1):
        x = torch.randn(3, rows, 512, generator=gen)  # (B, T, C) like a model's activations
        got = layer(x)
        assert got.shape == (3, rows, 45)
        want = x.double() @ ref.double().T + b.double()
        torch.testing.assert_close(got.double(), want, rtol=0, atol=matmul_tolerance(x.reshape(-1, 512), ref))


def test_a_wrong_scale_is_far_outside_the_tolerance() -> None:
    """The matmul tolerance is tight enough to catch a scale applied to the neighbouring group."""
    gen = torch.Generator().manual_seed(0)
    layer = QuantizedLinear.from_float(torch.randn(16, 256, generator=gen), "int4", 32)
    x = torch.randn(1, 256, generator=gen)
    parts = layer.parts()
    wrong = dequantize_reference(parts["q"], parts["scale"].roll(1, dims=1), parts["zero"], 4)
    right = dequantize_reference(parts["q"], parts["scale"], parts["zero"], 4)
    assert (layer(x) - x @ wrong.T).abs().max() > 100 * matmul_tolerance(x, right)


def test_quantized_embedding_and_tied_head_share_bytes() -> None:
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(100, 64, generator=gen)
    head = QuantizedLinear.from_float(table, "q8_0")
    emb = QuantizedEmbedding.from_linear(head)
    ids = torch.tensor([[0, 5, 99], [7, 7, 1]])
    full = dequantize_reference(head.parts()["q"], head.parts()["scale"], None, 8)
    torch.testing.assert_close(emb(ids), full[ids], rtol=0, atol=0)
    assert emb.q.data_ptr() == emb.tied_head().q.data_ptr() == head.q.data_ptr()


@pytest.mark.parametrize("qtype,n_out,k", [("int4", 130, 256), ("int8", 130, 333), ("q8_0", 200, 96),
                                           ("q4_1", 64, 64), ("int4", 1, 64)])
@pytest.mark.parametrize("threads", [1, 2])  # the serial kernels (one thread) and the prange ones
def test_row_tiles_past_one_tile_and_odd_rows(qtype: str, n_out: int, k: int, threads: int) -> None:
    """Several row tiles with a partial last one (130 = 2·64 + 2), an odd row length (int8 per row), one row."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_tiles(qtype, n_out, k)
    finally:
        torch.set_num_threads(before)


def check_tiles(qtype: str, n_out: int, k: int) -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(n_out, k, generator=gen) * torch.logspace(-4, 3, n_out)[:, None]  # extreme row scales
    layer = QuantizedLinear.from_float(w, qtype, 32 if qtype == "int4" else None)
    parts = layer.parts()
    ref = dequantize_reference(parts["q"], parts["scale"], parts.get("zero"), layer.bits)
    torch.testing.assert_close(layer.dequantize(), ref, rtol=0, atol=0)
    for rows in (1, 2, 5):
        x = torch.randn(rows, k, generator=gen)
        got = layer(x)
        assert got.shape == (rows, n_out)
        torch.testing.assert_close(got.double(), x.double() @ ref.double().T, rtol=0, atol=matmul_tolerance(x, ref))


def test_state_dict_round_trip_is_byte_identical() -> None:
    layer = QuantizedLinear.from_float(torch.randn(130, 256), "int4", 64)
    again = QuantizedLinear(256, 130, "int4", 64)
    again.load_state_dict(layer.state_dict())
    assert layer.state_dict()["q"].shape == (130, 128)  # the portable order: row n, byte j = weights 2j, 2j+1
    for name, tensor in layer.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    torch.testing.assert_close(layer.state_dict()["q"], layer.parts()["q"], rtol=0, atol=0)


def test_state_dicts_of_successive_layers_are_their_own() -> None:
    """A freed layer's buffer memory may be reused by the next layer's: its state_dict must not return the old copy."""
    kept = []
    for seed in range(20):
        w = torch.randn(64, 64, generator=torch.Generator().manual_seed(seed))
        layer = QuantizedLinear.from_float(w, "int4", 32)
        state = layer.state_dict()
        assert torch.equal(state["q"], layer.parts()["q"]) and torch.equal(state["scale"], layer.parts()["scale"])
        kept.append(state)  # the portable copies stay alive after their layer is gone
        del layer


def test_bad_formats_and_groups_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="not a whole number of groups of 128"):
        QuantizedLinear.from_float(torch.randn(4, 200), "int4", 128)
    with pytest.raises(ConfigError, match="group size must be one of"):
        QuantizedLinear.from_float(torch.randn(4, 256), "int4", 48)
    with pytest.raises(ConfigError, match="unknown format 'q3_x'"):
        QuantizedLinear(256, 4, "q3_x")
    with pytest.raises(ConfigError, match="cannot write it"):
        quantize_weight(torch.randn(4, 256), "q4_k")


def test_opt_in_torch_bf16_int4_path_is_within_bfloat16_rounding() -> None:
    from lmforge.nn.quantized import use_torch_bf16_int4

    gen = torch.Generator().manual_seed(0)
    layers = [QuantizedLinear.from_float(torch.randn(37, 256, generator=gen), "int4", 64),  # N not a multiple of 16
              QuantizedLinear.from_gguf(random_blocks("q4_1", 40, 8, seed=5), "q4_1", 256)]
    x = torch.randn(2, 256, generator=gen)
    exact = [layer(x) for layer in layers]
    assert use_torch_bf16_int4(torch.nn.ModuleList(layers)) == 2
    for layer, want in zip(layers, exact, strict=True):
        got = layer(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0.02 * want.abs().max().item())
        assert not torch.equal(got, want)  # really the bfloat16 path


def int8_activation_reference(x: np.ndarray, values: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """The opt-in int8-activation arithmetic written out in numpy, independently of the kernel: ``x (M, K)`` quantized
    per block of 32 (``d = max|x|/127``, ``xq = rint(x·(1/d))``), ``values (N, K)`` 0..15 dotted with ``xq`` per
    block in int64, ``y = Σ_groups scale · Σ_blocks d · isum + zero · Σ_group x`` (float64) → ``(M, N)``."""
    m, k = x.shape
    n, groups = scale.shape
    xb = x.reshape(m, k // 32, 32)
    d = (np.abs(xb).max(-1, keepdims=True) / np.float32(127)).astype(np.float32)  # (M, K/32, 1)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d > 0)
    xq = np.rint(xb * inv).astype(np.int64)  # (M, K/32, 32) in -127..127
    assert np.abs(xq).max() <= 127
    isum = np.einsum("mbk,nbk->mnb", xq, values.reshape(n, k // 32, 32).astype(np.int64))  # exact (M, N, K/32)
    per_group = (isum * d[:, None, :, 0]).reshape(m, n, groups, -1).sum(-1)  # Σ_blocks d·isum, (M, N, K/g)
    x_sum = x.astype(np.float64).reshape(m, groups, -1).sum(-1)  # (M, K/g)
    return (per_group * scale[None]).sum(-1) + x_sum @ zero.T.astype(np.float64)


INT8_ACT_CASES = [("q4_0", None, 37, 64), ("q4_1", None, 130, 96), ("q4_k", None, 70, 256), ("int4", 32, 1, 64),
                  ("int4", 128, 45, 384), ("int4", 256, 65, 512)]


@pytest.mark.parametrize("qtype,group,n_out,k", INT8_ACT_CASES)
@pytest.mark.parametrize("threads", [1, 2])  # serial and prange kernels
def test_int8_activations_equal_their_numpy_reference_and_stay_near_the_float_path(
        qtype: str, group: int | None, n_out: int, k: int, threads: int) -> None:
    """``use_int8_activations``: the kernel equals the same arithmetic in numpy to float32 rounding (integer sums
    are exact), and is within the activation-rounding bound of dequantize-then-matmul: each ``x`` moves by at most
    ``d/2`` per block, so ``|Δy_n| ≤ Σ_k |w_nk| · d_k / 2``."""
    from lmforge.nn.quantized import use_int8_activations

    gen = torch.Generator().manual_seed(n_out)
    if qtype in GGUF_QTYPES:
        raw = random_blocks(qtype, n_out, k // FORMATS[qtype].block, seed=k, extreme=False)
        layer = QuantizedLinear.from_gguf(raw, qtype, k)
    else:
        layer = QuantizedLinear.from_float(torch.randn(n_out, k, generator=gen), qtype, group)
    parts = layer.parts()
    ref_w = dequantize_reference(parts["q"], parts["scale"], parts["zero"], 4).double()  # (N, K)
    values = np.stack([parts["q"].numpy() & 15, parts["q"].numpy() >> 4], -1).reshape(n_out, k)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert use_int8_activations(layer) == 1
        for rows in (1, 3):
            x = torch.randn(rows, k, generator=gen) * torch.logspace(-2, 1, k)  # blocks of very different scale
            x[0, :32] = 0  # an all-zero block (d = 0)
            got = layer(x).double().numpy()
            want = int8_activation_reference(x.numpy(), values, parts["scale"].numpy(), parts["zero"].numpy())
            terms = np.abs(want).max() + np.abs(x.double().numpy()) @ np.abs(ref_w.numpy()).T
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * terms.max())
            d = x.abs().reshape(rows, -1, 32).amax(-1).double() / 127  # (M, K/32)
            bound = (d.repeat_interleave(32, dim=1) / 2) @ ref_w.abs().T  # (M, N)
            err = (torch.from_numpy(got) - x.double() @ ref_w.T).abs()
            assert (err <= bound * 1.001 + 1e-4 * terms.max()).all()
            assert (err > matmul_tolerance(x, ref_w.float())).any()  # really the int8 path, not the float one
    finally:
        torch.set_num_threads(before)


def test_int8_activations_switch_only_4_bit_layers_and_keep_long_prompts_exact() -> None:
    from lmforge.nn import _quantized_numba
    from lmforge.nn.quantized import TILE, use_int8_activations

    assert _quantized_numba.LANES == TILE  # the int8-activation kernel's compile-time tile

    gen = torch.Generator().manual_seed(0)
    layers = torch.nn.ModuleList([QuantizedLinear.from_float(torch.randn(40, 256, generator=gen), "int4", 64),
                                  QuantizedLinear.from_float(torch.randn(40, 256, generator=gen), "q8_0"),
                                  QuantizedLinear.from_gguf(random_blocks("q6_k", 40, 1, seed=2), "q6_k", 256)])
    x = torch.randn(DECODE_MAX_ROWS + 1, 256, generator=gen)
    before = [layer(x) for layer in layers] + [layer(x[:1]) for layer in layers]
    assert use_int8_activations(layers) == 1
    after = [layer(x) for layer in layers] + [layer(x[:1]) for layer in layers]
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        assert torch.equal(a, b) != (i == 3)  # only the 4-bit layer's decode rows change


def test_int8_activations_give_the_same_greedy_text_on_a_tiny_gpt() -> None:
    """Activation rounding (~1e-3 of the logits' scale) keeps every greedy argmax of a tiny random Llama-style GPT
    quantized to Q4_1 (its logits have margins far above that; 24 steps, prompts of 5 ids)."""
    from lmforge.generate import generate_ids
    from lmforge.io.quantize import quantize_model
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.nn.quantized import use_int8_activations

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, norm="rms",
                          mlp="swiglu", pos="rope")).eval()
    quantize_model(model, "q4_1")
    prompts = [[1, 5, 9, 200, 17], [250, 3, 3, 40, 8]]
    want = generate_ids(model, prompts, max_new_tokens=24).new_ids
    with torch.inference_mode():
        float_logits = model(torch.tensor(prompts[:1]))  # 5 rows: the decode kernels
    four_bit = [m for m in model.modules() if isinstance(m, QuantizedLinear) and m.bits == 4]
    assert use_int8_activations(model) == len(four_bit) >= 8  # every block's projections (the q8_0 head stays)
    with torch.inference_mode():
        int8_logits = model(torch.tensor(prompts[:1]))
    assert not torch.equal(int8_logits, float_logits)  # the switch took
    torch.testing.assert_close(int8_logits, float_logits, rtol=0, atol=0.01 * float_logits.abs().max().item())
    assert generate_ids(model, prompts, max_new_tokens=24).new_ids == want
