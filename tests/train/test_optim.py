"""AdamW parameter groups and the learning-rate schedule (checked against torch's own schedulers)."""

from __future__ import annotations

import pytest
import torch

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.optim import build_adamw, decay_groups, lr_at


@pytest.mark.parametrize("switches", [{}, {"norm": "rms", "mlp": "swiglu", "pos": "rope", "bias": False,
                                           "tie_embeddings": False}])
def test_decay_only_on_matrices_of_linear_layers(switches):
    model = GPT(GPTConfig(vocab_size=100, block_size=16, n_layer=2, n_head=2, n_embd=32, **switches))
    decay, no_decay = decay_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay}
    kept = {names[id(p)] for p in no_decay}
    assert len(decay) + len(no_decay) == len(list(model.parameters()))  # each parameter once (tied: once)
    assert "wte.weight" in kept  # embeddings (and the LM head when tied to them)
    assert all(".norm" in n or "norm_f" in n or n.endswith("bias") or n.startswith(("wte", "wpe")) for n in kept)
    assert all(p.ndim == 2 for p in decay)
    assert any("attn" in n for n in decayed) and any("mlp" in n for n in decayed)
    if not model.config.tie_embeddings:
        assert "lm_head.weight" in decayed
    opt = build_adamw(model, lr=1e-3, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_decoupled_decay_leaves_norms_and_embeddings_alone():
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=16))
    opt = build_adamw(model, lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay can move a weight
    opt.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        should_move = before[name].ndim == 2 and not name.startswith(("wte", "wpe"))
        assert moved == should_move, name
        if should_move:  # decoupled: w <- w - lr * wd * w, independent of Adam's moments
            torch.testing.assert_close(p, before[name] * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("warmup,total", [(10, 100), (1, 30), (25, 40)])
def test_schedule_matches_torch_linear_then_cosine(warmup, total):
    max_lr, min_lr = 3e-3, 3e-4
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=max_lr)
    reference = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr),
    ], milestones=[warmup])
    for step in range(total):
        assert lr_at(step, max_lr, min_lr, warmup, total) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        reference.step()
    assert lr_at(total, max_lr, min_lr, warmup, total) == pytest.approx(min_lr)
