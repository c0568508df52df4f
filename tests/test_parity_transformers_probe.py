"""The probe's attention weights and hidden states equal transformers' (eager attention, ``output_attentions`` /
``output_hidden_states``) on tiny random GPT-2, Llama (grouped-query) and BERT checkpoints whose query/key weights
are scaled up so attention is far from uniform: a wrong mask, scale or head order would be off by ≫ 1e-5."""

from __future__ import annotations

import pytest
import torch

import lmforge
from lmforge.probe import probe

pytestmark = pytest.mark.xdist_group("hf_tiny_probe")

# Query/key weights rescaled from std 0.02 to 0.4: scores x400, heads attend sharply (test_attention_is_sharp);
# a softmax scale off by 20% then moves the weights by 0.1-0.2, far outside the 1e-5 tolerance (checked).
QK_STD = 0.4


def _hf_model(kind: str):
    import transformers as tf

    torch.manual_seed({"gpt2": 0, "llama": 1, "bert": 2}[kind])
    if kind == "gpt2":
        cfg = tf.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=101, n_positions=64, bos_token_id=0,
                            eos_token_id=1, attn_implementation="eager")
        model, qk = tf.GPT2LMHeadModel(cfg), ("c_attn.weight",)
    elif kind == "llama":
        cfg = tf.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
                             intermediate_size=48, vocab_size=101, max_position_embeddings=64, bos_token_id=0,
                             eos_token_id=1, attn_implementation="eager")
        model, qk = tf.LlamaForCausalLM(cfg), ("q_proj.weight", "k_proj.weight")
    else:
        cfg = tf.BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, max_position_embeddings=64, attn_implementation="eager")
        model, qk = tf.BertForMaskedLM(cfg), ("query.weight", "key.weight")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(qk):
                p.mul_(QK_STD / p.std())
    return model.eval()


@pytest.fixture(scope="module", params=["gpt2", "llama", "bert"])
def pair(request, tmp_path_factory):
    ref = _hf_model(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    if request.param == "bert":  # lmforge loads a BERT with its vocabulary
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(96)]
        (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return request.param, lmforge.load(folder), ref


def _reference(ref, ids):
    with torch.no_grad():
        return ref(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)


IDS = [5, 17, 3, 88, 42, 42, 9, 17, 60, 2, 71, 17, 5, 33]


def test_attentions_equal_transformers(pair):
    kind, lm, ref = pair
    pr = probe(lm, ids=IDS)
    out = _reference(ref, IDS)
    assert len(pr.attentions) == len(out.attentions) == 2
    for ours, theirs in zip(pr.attentions, out.attentions, strict=True):
        assert ours.shape == theirs[0].shape == (4, len(IDS), len(IDS))
        torch.testing.assert_close(ours, theirs[0], atol=1e-5, rtol=0)


def test_attention_is_sharp(pair):
    """The scaled weights make attention peaked: a wrong scale or mask would move weights by far more than 1e-5."""
    _, lm, _ = pair
    pr = probe(lm, ids=IDS)
    last_row = torch.stack([a[:, -1] for a in pr.attentions])  # (L, H, T): the last query sees every key
    assert last_row.max(-1).values.mean() > 0.3  # uniform would be 1/14 = 0.07


def test_hidden_states_equal_transformers(pair):
    kind, lm, ref = pair
    pr = probe(lm, ids=IDS)
    out = _reference(ref, IDS)
    theirs = [h[0] for h in out.hidden_states]
    assert len(pr.hidden) == len(theirs) == 3
    if kind != "bert":  # transformers' last GPT-2/Llama hidden state is after the final norm; ours is before it
        theirs[-1] = None
        torch.testing.assert_close(lm.model.norm_f(pr.hidden[-1]), out.hidden_states[-1][0], atol=1e-5, rtol=0)
    for l, (ours, h) in enumerate(zip(pr.hidden, theirs, strict=True)):
        if h is not None:
            torch.testing.assert_close(ours, h, atol=1e-5, rtol=0, msg=f"hidden state {l}")
    torch.testing.assert_close(pr.logits, out.logits[0], atol=1e-4, rtol=0)
