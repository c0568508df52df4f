"""Learning on the synthetic language pair (target re-ordered and inflected, sentences of 3-16 words), the same budget
for both RNNs (150 steps x 32 pairs, one shared BPE of 400 tokens, seed 0): the attention RNN translates short
sentences well, and on the longest sentences it beats the RNN that must squeeze the source into one vector. The
Transformer (pre-norm, 2+2 layers, 64 wide, 200 steps) translates short sentences well too.

Bars chosen from seeds 0-5 (the same set-up, seed = init and batch order), BLEU on the first 100 test pairs:
attention RNN (dot) 1-6 words 88.9-97.5, 12-16 words 84.6-89.4; no-attention RNN 12-16 words 1.7-3.4 (it has not
learnt to use its one vector at this budget: 2.5-6.4 even on 1-6 words). Margin on the longest bucket: 81-87.
Transformer (pre-norm, 200 steps x 32 pairs, lr 6e-3): 1-6 words 77.0-88.6, all 68.0-81.6, 12-16 words 63.0-79.1.
"""

from __future__ import annotations

import pytest
import torch

from lmforge.data.parallel import synthetic_pairs
from lmforge.generate import seq2seq_generate_ids
from lmforge.models.transformer import Transformer, TransformerConfig
from lmforge.train.loop import train
from lmforge.train.seq2seq import Seq2SeqTask, prepare, scores_by_length, seq2seq_batch, translate_ids

pytestmark = pytest.mark.slow
BUCKETS = ((1, 6), (7, 11), (12, 100))
BUDGET = {"steps": 150, "batch_size": 32, "lr": 3e-3, "warmup_steps": 20, "eval_every": 0, "checkpoint_every": 0,
          "seed": 0}
SHAPE = {"n_embd": 64, "rnn_hidden": 64, "dropout": 0.0}
# Pre-norm: at this budget it learns faster and more evenly than the paper's post-norm (post-norm, same budget,
# seeds 0-1: 1-6 words 74.6 and 53.0), which wants a longer warm-up and a lower learning rate. No label smoothing:
# it slows the fall of the loss (it is for generalising on real data, not for a 200-step test). init_std is the
# default (n_embd^-1/2); with GPT-2's 0.02 the same run stays at BLEU 0.7 (seed 0): cross-attention starts uniform.
TRANSFORMER = {"n_layer": 2, "n_head": 4, "n_embd": 64, "ffn_hidden": 128, "dropout": 0.0, "prenorm": True,
               "label_smoothing": 0.0}
TRANSFORMER_BUDGET = {**BUDGET, "steps": 200, "lr": 6e-3, "warmup_steps": 30}


@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(3000, seed=0, max_words=16)


def trained_scores(setup, run_dir) -> dict[str, dict[str, float]]:
    """Train ``setup``'s model, then its BLEU by source length on the first 100 test pairs."""
    train(setup.model, setup.task, setup.train_config, run_dir, progress=False)
    test = setup.splits["test"][:100]
    with torch.inference_mode():
        hyps = translate_ids(setup.model, setup.tokenizer, [p.source for p in test])
    return scores_by_length([p.source for p in test], hyps, [p.target for p in test], BUCKETS)


@pytest.fixture(scope="module")
def scores(pairs, tmp_path_factory):
    out, tokenizer = {}, None
    for attention in ("none", "dot"):
        setup = prepare("synthetic", "rnn", {**SHAPE, "attention": attention}, BUDGET, pairs=pairs, vocab_size=400,
                        tokenizer=tokenizer)
        tokenizer = setup.tokenizer
        out[attention] = trained_scores(setup, tmp_path_factory.mktemp(attention))
    return out


def test_attention_rnn_translates_short_sentences(scores):
    assert scores["dot"]["1-6"]["n"] >= 20
    assert scores["dot"]["1-6"]["bleu"] >= 75  # seeds 0-5: 88.9-97.5


def test_attention_beats_the_single_vector_on_the_longest_sentences(scores):
    longest = "12-100"
    assert scores["dot"][longest]["n"] >= 40
    assert scores["dot"][longest]["bleu"] >= scores["none"][longest]["bleu"] + 10  # seeds 0-5: margin 81-87


def test_transformer_translates_short_sentences(pairs, tmp_path):
    setup = prepare("synthetic", "transformer", TRANSFORMER, TRANSFORMER_BUDGET, pairs=pairs, vocab_size=400)
    scores = trained_scores(setup, tmp_path)
    assert scores["1-6"]["n"] >= 20
    # seeds 0-5: 1-6 words 77.0-88.6 (all words 68.0-81.6); the unigram plateau it used to stay on is BLEU ~1
    assert scores["1-6"]["bleu"] >= 60
    assert scores["all"]["bleu"] >= 50  # seeds 0-5: 68.0-81.6


@pytest.mark.parametrize("prenorm", [False, True])
def test_transformer_memorises_20_pairs_and_greedy_decoding_replays_them(prenorm):
    """The training path end to end on ids: teacher-forced loss (decoder input = start + target, labels = target +
    eos, padding ignored) trains a tiny Transformer to memorise 20 random pairs of 3-8 tokens, and greedy decoding
    then reproduces every target exactly. A label shift of one, or a decoder that sees its own next token in
    training (no causal mask), still drives the loss down but makes greedy decoding fail.
    Seeds 0-5, both norms: loss 0.016-0.026 after 100 full-batch steps, 20/20 exact every time."""
    g = torch.Generator().manual_seed(0)

    def ids() -> list[int]:
        return torch.randint(3, 40, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist()

    pairs = [(ids() + [2], ids()) for _ in range(20)]  # (source + eos, target)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=40, block_size=16, n_layer=1, n_head=4, n_embd=32, dropout=0.0,
                                          label_smoothing=0.0, prenorm=prenorm))
    task = Seq2SeqTask(pairs, [], pad_id=0, start_id=1, eos_id=2)
    batch = seq2seq_batch(pairs, pad_id=0, start_id=1, eos_id=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = task.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1  # seeds 0-5: 0.016-0.026
    model.eval()
    out = seq2seq_generate_ids(model, [src for src, _ in pairs], max_new_tokens=10).new_ids
    assert [list(o) for o in out] == [tgt for _, tgt in pairs]
