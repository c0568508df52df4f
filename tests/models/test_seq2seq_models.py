"""Invariants of both encoder–decoders (Transformer, RNN with each attention switch): cached decoding equals
recomputing from scratch, beam 1 equals greedy, source padding changes nothing, bad configs are named."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.generate import generate_ids, right_pad
from lmforge.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from lmforge.models.transformer import Transformer, TransformerConfig

V = 53


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    common = dict(vocab_size=V, block_size=32, dropout=0.0, pad_token_id=0, decoder_start_token_id=1, eos_token_id=2)
    models = {
        # large init so that a wrong mask / offset moves the logits far beyond float noise
        "transformer": Transformer(TransformerConfig(n_layer=2, n_head=4, n_embd=32, init_std=0.2, **common)),
        "transformer-prenorm": Transformer(TransformerConfig(n_layer=2, n_head=4, n_embd=32, init_std=0.2,
                                                             prenorm=True, share_embeddings=False, **common)),
    }
    for attention in ("none", "additive", "dot"):
        models[f"rnn-{attention}"] = RNNSeq2Seq(RNNSeq2SeqConfig(n_embd=24, n_layer=2, attention=attention,
                                                                 init_std=0.5, **common))
    return {k: m.eval() for k, m in models.items()}


MODELS = _models()
SOURCES = [[5, 6, 7, 8, 9, 10, 2], [11, 12, 2], [13, 14, 15, 16, 2]]


@pytest.mark.parametrize("name", list(MODELS))
def test_cached_decoding_equals_recomputing(name):
    model = MODELS[name]
    src, mask = right_pad(SOURCES, 0)
    tgt = torch.randint(3, V, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(src, tgt, mask)  # (B, T, V), no cache
        cache = model.new_cache(model.encode(src, mask), mask, max_len=16)
        steps = [model.decode(tgt[:, :4], cache)]  # a multi-token chunk, then single tokens
        steps += [model.decode(tgt[:, i : i + 1], cache) for i in range(4, 9)]
    cached = torch.cat(steps, dim=1)
    assert full.abs().max() > 1.0
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_padded_batch_equals_each_row_alone(name):
    model = MODELS[name]
    src, mask = right_pad(SOURCES, 0)
    tgt = torch.randint(3, V, (3, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batch = model(src, tgt, mask)
        for r, s in enumerate(SOURCES):
            alone = model(torch.tensor([s]), tgt[r : r + 1])
            torch.testing.assert_close(batch[r : r + 1], alone, atol=1e-5, rtol=1e-5)
        # the guard: letting cross-attention see the padding changes the short rows
        if name != "rnn-none":
            unmasked = model(src, tgt, torch.ones_like(mask))
            assert (unmasked[1] - batch[1]).abs().max() > 1e-2


@pytest.mark.parametrize("name", list(MODELS))
def test_training_loss_on_target_rows_equals_full_logits(name):
    """The trainer's path (``target_mask``: the Transformer computes only real source and target positions, both
    models apply the LM head only there) gives the same loss and the same gradients as full padded logits."""
    from lmforge.train.seq2seq import Seq2SeqTask, seq2seq_batch

    model = MODELS[name].train()
    pairs = [([5, 6, 7, 8, 9, 10], [20, 21]), ([11, 12], [22, 23, 24, 25, 26, 27]), ([13, 14, 15], [28, 29, 30])]
    batch = seq2seq_batch(pairs, pad_id=0, start_id=1, eos_id=2)
    task = Seq2SeqTask(pairs, [], pad_id=0, start_id=1, eos_id=2)
    try:
        model.zero_grad()
        fast = task.loss(model, batch)
        fast.backward()
        fast_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        logits = model(batch["src"], batch["dec"], batch["src_mask"])  # (B, T, V), every position
        full = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100,
                                                 label_smoothing=model.config.label_smoothing)
        full.backward()
        torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
        for g_fast, p in zip(fast_grads, model.parameters(), strict=True):
            torch.testing.assert_close(g_fast, p.grad, atol=1e-5, rtol=1e-4)
        if name.startswith("transformer"):  # a hole before a real position would change what that position sees
            holed = batch["labels"] != -100
            holed[:, 0] = False
            with pytest.raises(InputError, match="target_mask"):
                model(batch["src"], batch["dec"], batch["src_mask"], target_mask=holed)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_greedy_equals_argmax_recompute_and_beam_one(name):
    model = MODELS[name]
    greedy = generate_ids(model, SOURCES, max_new_tokens=8, eos_token_ids=[])
    beam1 = generate_ids(model, SOURCES, max_new_tokens=8, num_beams=1, eos_token_ids=[])
    assert greedy.new_ids == beam1.new_ids
    with torch.no_grad():  # oracle: full recomputation over the growing target, no cache
        for r, s in enumerate(SOURCES):
            tgt = [1]
            for _ in range(8):
                tgt.append(int(model(torch.tensor([s]), torch.tensor([tgt]))[0, -1].argmax()))
            assert greedy.new_ids[r] == tgt[1:]


@pytest.mark.parametrize("name", ["transformer", "rnn-additive"])
def test_beam_search_beats_or_ties_greedy_and_reorders_the_cache(name):
    model = MODELS[name]
    beams = generate_ids(model, SOURCES, max_new_tokens=6, num_beams=4, eos_token_ids=[])
    greedy = generate_ids(model, SOURCES, max_new_tokens=6, eos_token_ids=[])

    def score(src, out):
        with torch.no_grad():
            logits = model(torch.tensor([src]), torch.tensor([[1, *out[:-1]]]))[0]
        return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(out)[:, None]).sum())

    for r, s in enumerate(SOURCES):
        assert len(beams.new_ids[r]) == 6
        assert score(s, beams.new_ids[r]) >= score(s, greedy.new_ids[r]) - 1e-4


def test_bad_inputs_are_named():
    model = MODELS["transformer"]
    with pytest.raises(InputError, match="longer than the model allows|more than the model allows"):
        generate_ids(model, [[5] * 40])
    with pytest.raises(InputError, match="source 0 is empty"):
        generate_ids(model, [[]])
    with pytest.raises(InputError, match="outside"):
        generate_ids(model, [[V + 3]])
    with pytest.raises(ConfigError, match="attention"):
        RNNSeq2SeqConfig(attention="luong")
    with pytest.raises(ConfigError, match="share_embeddings"):
        TransformerConfig(vocab_size=10, src_vocab_size=12)
    with pytest.raises(ConfigError, match="unknown"):
        TransformerConfig.from_dict({"n_layers": 2})


def test_config_round_trip_and_parameter_count():
    for model in MODELS.values():
        cfg = model.config
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
        assert model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_text_level_translate_and_stream(tmp_path):
    from lmforge.lm import LM
    from lmforge.tokenizers.train import train_tokenizer

    tok = train_tokenizer(["the dog sees a cat"] * 4, vocab_size=262, special_tokens=["<pad>", "<s>", "</s>"])
    pad, start, eos = (tok.token_to_id(t) for t in ("<pad>", "<s>", "</s>"))
    torch.manual_seed(0)
    model = RNNSeq2Seq(RNNSeq2SeqConfig(vocab_size=tok.vocab_size, block_size=16, n_embd=16, pad_token_id=pad,
                                        decoder_start_token_id=start, eos_token_id=eos)).eval()
    lm = LM(model, tok)
    ids = generate_ids(model, [tok.encode("the dog", add_special_tokens=False) + [eos]], max_new_tokens=16)
    assert lm.generate("the dog") == tok.decode(ids.new_ids[0])
    assert "".join(lm.stream("the dog")) == lm.generate("the dog")
    assert lm.generate(["the dog", "a cat"], num_beams=2)[0] == lm.generate("the dog", num_beams=2)
