"""The inspection API on a tiny GPT with a real BPE tokenizer and a tiny BERT: the weights are a softmax over the
allowed keys (rows sum to 1, causal rows zero above the diagonal, padding columns zero), the explicit path the
pictures read equals the fast SDPA path, the logit lens ends at the model's own output, and bad input is named."""

from __future__ import annotations

import pytest
import torch

import lmforge
from lmforge.errors import InputError
from lmforge.probe import greedy_steps, logit_lens, probe, run_with_capture
from tests.probe_helpers import make_bert_folder, make_gpt_folder

TEXT = "The interpreter reads the file and the interpreter runs it"


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return lmforge.load(make_gpt_folder(tmp_path_factory.mktemp("gpt")))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return lmforge.load(make_bert_folder(tmp_path_factory.mktemp("bert")))


def test_tokens_and_shapes(lm):
    pr = probe(lm, TEXT)
    assert pr.ids == lm.tokenizer.encode(TEXT)
    assert "".join(pr.tokens) == TEXT  # byte-level BPE: the pieces spell the text
    T = len(pr.ids)
    assert pr.n_layer == 2 and pr.n_head == 4 and len(pr.hidden) == 3
    assert pr.attention(1, 3).shape == (T, T)
    assert pr.logits.shape == (T, 300)


def test_weights_are_a_causal_softmax(lm):
    pr = probe(lm, TEXT)
    for w in pr.attentions:  # (H, T, T)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-6, rtol=0)
        assert torch.all(w.triu(diagonal=1) == 0)
        assert w.max(-1).values[:, 5:].mean() > 0.3  # sharp, not uniform (1/T)


def test_padding_columns_are_zero(lm):
    ids = torch.tensor([lm.tokenizer.encode(TEXT)[:10], lm.tokenizer.encode(TEXT)[:10]])
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    _, weights, _ = run_with_capture(lm.model, ids, mask)
    for w in weights:  # (B, H, T, S)
        real = w[1, :, :6]  # real-token rows of the padded sequence
        assert torch.all(real[..., 6:] == 0)
        torch.testing.assert_close(real.sum(-1), torch.ones(4, 6), atol=1e-6, rtol=0)
        torch.testing.assert_close(w[1, :, :6, :6], w[0, :, :6, :6], atol=1e-5, rtol=0)  # padding changes nothing


def test_bert_padding_columns_and_rows(bert):
    ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 10, 11, 3, 0, 0]])
    mask = (ids != 0).long()
    _, weights, _ = run_with_capture(bert.model, ids, mask)
    for w in weights:
        assert torch.all(w[1, :, :4, 4:] == 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6), atol=1e-6, rtol=0)
        assert (w[0].triu(diagonal=1) > 0).any()  # bidirectional: later keys are seen


@pytest.mark.parametrize("which", ["gpt", "bert"])
def test_explicit_path_equals_sdpa(lm, bert, which):
    model = (lm if which == "gpt" else bert).model
    ids = torch.tensor([lm.tokenizer.encode(TEXT)]) if which == "gpt" else torch.tensor([[2, 7, 19, 4, 33, 3]])
    fast_out, none, fast_hidden = run_with_capture(model, ids, attentions=False)
    slow_out, weights, slow_hidden = run_with_capture(model, ids, attentions=True)
    assert none == [] and len(weights) == 2
    torch.testing.assert_close(slow_out, fast_out, atol=1e-5, rtol=0)
    for a, b in zip(slow_hidden, fast_hidden, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast_out, model(ids), atol=0, rtol=0)  # the hooks leave the model's output alone


def test_probabilities_are_softmax_of_logits(lm):
    pr = probe(lm, TEXT)
    logits = lm.model(torch.tensor([pr.ids]))[0, -1]
    top = pr.top_k(lm.tokenizer, 5)
    expected = torch.softmax(logits, -1).topk(5)
    assert [t["id"] for t in top] == expected.indices.tolist()
    assert [t["prob"] for t in top] == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert top[0]["token"] == lm.tokenizer.decode([top[0]["id"]])


def test_logit_lens_last_layer_is_the_output(lm):
    pr = probe(lm, TEXT)
    lens = logit_lens(lm, pr, positions=[0, -1], k=3)
    assert len(lens["ids"]) == 3 and lens["positions"] == [0, len(pr.ids) - 1]
    for j, pos in enumerate(lens["positions"]):
        probs = torch.softmax(pr.logits[pos], -1).topk(3)
        assert lens["ids"][-1][j] == probs.indices.tolist()
        assert lens["probs"][-1][j] == pytest.approx(probs.values.tolist(), abs=1e-5)
    first = torch.softmax(lm.model.lm_head(lm.model.norm_f(pr.hidden[0][-1])), -1).argmax().item()
    assert lens["ids"][0][1][0] == first  # row 0: the embedding read through the head


def test_greedy_steps_follow_argmax(lm):
    steps = greedy_steps(lm, TEXT, 3, k=4)
    ids = lm.tokenizer.encode(TEXT)
    for step in steps:
        assert step["chosen"]["id"] == lm.model(torch.tensor([ids]))[0, -1].argmax().item()
        assert len(step["top"]) == 4
        ids.append(step["chosen"]["id"])


def test_bert_mlm_candidates(bert):
    pr = probe(bert, "w3 [MASK] w7")
    assert pr.tokens[0] == "[CLS]" and not pr.causal
    top = pr.top_k(bert.tokenizer, 3, position=2)
    expected = torch.softmax(bert.model(torch.tensor([pr.ids]))[0, 2], -1).topk(3)
    assert [t["id"] for t in top] == expected.indices.tolist()


def test_bad_input(lm):
    with pytest.raises(InputError, match="empty"):
        probe(lm, "   ")
    with pytest.raises(InputError, match="context window is 64"):
        probe(lm, "word " * 200)
    pr = probe(lm, TEXT)
    with pytest.raises(InputError, match="layers 0..1"):
        pr.attention(2, 0)
    with pytest.raises(InputError, match="heads 0..3"):
        pr.attention(0, 4)
    with pytest.raises(InputError, match="positions 0.."):
        logit_lens(lm, pr, positions=[99])


def test_model_without_attention_is_refused():
    from types import SimpleNamespace

    from lmforge.probe import probe as run_probe

    no_attention = SimpleNamespace(model=torch.nn.Linear(2, 2), tokenizer=None, path="x")
    with pytest.raises(InputError, match="no attention layers"):
        run_probe(no_attention, ids=[1, 2])


def test_doctests():
    import doctest

    import lmforge.plot
    import lmforge.probe

    for module in (lmforge.probe, lmforge.plot):
        assert doctest.testmod(module).failed == 0
