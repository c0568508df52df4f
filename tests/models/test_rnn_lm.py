"""The GRU language model: causal, state carries across calls, learns a pattern a unigram model cannot."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import ConfigError
from lmforge.models.rnn_lm import GRULM, GRULMConfig


def model(**kw) -> GRULM:
    torch.manual_seed(0)
    return GRULM(GRULMConfig(vocab_size=20, n_embd=32, n_layer=2, **kw))


def test_causal_and_state_carries_over():
    m = model().eval()
    x = torch.randint(0, 20, (3, 12))
    full = m(x)
    changed = x.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 20  # the future must not change the past
    torch.testing.assert_close(m(changed)[:, :7], full[:, :7])
    assert not torch.allclose(m(changed)[:, 7:], full[:, 7:])
    a, state = m(x[:, :5], return_state=True)  # reading in two calls = reading in one
    b = m(x[:, 5:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-5, atol=1e-6)


def test_learns_what_the_previous_token_decides():
    m = model()
    seq = torch.tensor([[1, 2, 3, 4, 5] * 8])  # every token follows from the one before; unigram: ln 5 nats
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(m(seq[:, :-1]).reshape(-1, 20), seq[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * math.log(5)


def test_config_checks_and_sizes():
    with pytest.raises(ConfigError, match="n_embd"):
        GRULMConfig(n_embd=0)
    m = model(tie_embeddings=False)
    assert m.num_parameters() == 20 * 32 * 2 + 2 * (3 * (32 * 32 * 2 + 2 * 32))
    assert GRULMConfig.from_dict(m.config.to_dict()) == m.config
