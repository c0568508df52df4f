"""Per-row KV cache (continuous batching): rows of different lengths decoded in one batch give each row the logits
it gets decoded alone — GPT-2 style (learned positions), Llama style (RoPE, grouped-query) and a sliding window."""

from __future__ import annotations

import pytest
import torch

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.kv_cache import KVCache

CONFIGS = {
    "gpt2": GPTConfig(vocab_size=97, block_size=48, n_layer=2, n_head=4, n_embd=32),
    "llama": GPTConfig(vocab_size=97, block_size=48, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, norm="rms",
                       mlp="swiglu", pos="rope", bias=False),
    "sliding": GPTConfig(vocab_size=97, block_size=48, n_layer=2, n_head=4, n_kv_head=1, n_embd=32, norm="rms",
                         mlp="swiglu", pos="rope", bias=False, sliding_window=5),
}


def _model(name: str) -> GPT:
    torch.manual_seed(0)
    model = GPT(CONFIGS[name]).eval()
    with torch.no_grad():  # large weights: a wrong position, mask or offset moves the logits far beyond tolerance
        for p in model.parameters():
            p.mul_(4.0)
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.inference_mode()
def test_rows_of_different_lengths_decode_as_if_alone(name):
    model = _model(name)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (9, 3, 14, 1)]
    steps = 6
    feed = torch.randint(0, 97, (len(prompts), steps), generator=g)  # the tokens fed after each prompt
    # Reference: every row alone, whole sequence in one forward (no cache at all).
    expected = [model(torch.tensor([p + feed[r].tolist()]))[0, len(p) - 1:] for r, p in enumerate(prompts)]
    # Continuous batching: slots 0..3 prefilled one by one, then decoded together with per-row lengths.
    cache = model.new_kv_cache(6, 32)
    lengths = []
    got = [[] for _ in prompts]
    for r, p in enumerate(prompts):
        got[r].append(model(torch.tensor([p]), kv_cache=cache.slot(r), last_only=True)[0, -1])
        lengths.append(len(p))
    for step in range(steps):
        logits = model(feed[:, step : step + 1], kv_cache=cache.rows(lengths), last_only=True)[:, -1]
        lengths = [n + 1 for n in lengths]
        for r in range(len(prompts)):
            got[r].append(logits[r])
    for r in range(len(prompts)):
        torch.testing.assert_close(torch.stack(got[r]), expected[r], atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_move_row_packs_a_row_and_it_keeps_decoding():
    model = _model("llama")
    cache = model.new_kv_cache(3, 32)
    a, b = [5, 6, 7, 8], [9, 10]
    model(torch.tensor([a]), kv_cache=cache.slot(0))
    model(torch.tensor([b]), kv_cache=cache.slot(1))
    cache.move_row(1, 0, len(b))  # row 0 leaves; row 1 moves into its slot
    logits = model(torch.tensor([[11]]), kv_cache=cache.rows([len(b)]))[0, -1]
    torch.testing.assert_close(logits, model(torch.tensor([b + [11]]))[0, -1], atol=1e-4, rtol=1e-4)


def test_old_api_unchanged():
    cache = KVCache(2, 2, 1, 8, 4)
    k = torch.ones(2, 1, 3, 4)
    assert cache.update(0, k, k)[0].shape == (2, 1, 3, 4)
    cache.advance(3)
    assert cache.length == 3 and cache.lengths is None
    cache.reorder(torch.tensor([1, 0]))
