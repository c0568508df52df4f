"""Invariants of lmforge's BERT: padding changes nothing for real tokens, attention is bidirectional, the MLM
head is tied to the input embeddings, heads have the documented shapes, bad configs/inputs are clear errors."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.models.bert import Bert, BertConfig
from lmforge.train.presets import model_config


def _tiny(**kw) -> BertConfig:
    base = dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, ffn_hidden=32, block_size=24, dropout=0.0)
    base.update(kw)
    return BertConfig(**base)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = Bert(_tiny()).eval()
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    with torch.no_grad():
        alone = model(ids)
        batched = model(padded, attention_mask=mask)
    torch.testing.assert_close(batched[:, :6], alone, atol=1e-5, rtol=1e-5)


def test_attention_is_bidirectional():
    # Changing the LAST token changes the FIRST token's state: every position sees the whole input.
    torch.manual_seed(0)
    model = Bert(_tiny()).eval()
    a = torch.tensor([[5, 6, 7, 8]])
    b = torch.tensor([[5, 6, 7, 9]])
    with torch.no_grad():
        assert not torch.allclose(model(a)[0, 0], model(b)[0, 0])


def test_token_types_matter_and_default_to_segment_a():
    torch.manual_seed(0)
    model = Bert(_tiny()).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids, token_type_ids=torch.zeros_like(ids)))
        assert not torch.allclose(model(ids), model(ids, token_type_ids=torch.tensor([[0, 0, 1, 1]])))


def test_heads_have_documented_shapes():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (3, 7))
    assert Bert(_tiny())(ids).shape == (3, 7, 16)
    assert Bert(_tiny(head="mlm"))(ids).shape == (3, 7, 50)
    assert Bert(_tiny(head="classify", labels=["neg", "pos"]))(ids).shape == (3, 2)
    assert Bert(_tiny(head="tag", labels=["O", "B-X", "I-X"]))(ids).shape == (3, 7, 3)


def test_mlm_head_is_tied_to_input_embeddings():
    torch.manual_seed(0)
    model = Bert(_tiny(head="mlm"))
    names = list(model.state_dict())
    assert not any("decoder" in n for n in names)  # one matrix, stored once
    logits = model(torch.tensor([[1, 2, 3]]))
    logits[0, 0, 7].backward()
    # The output row for token 7 is the input embedding of token 7: it receives gradient from the prediction.
    assert model.embed.tokens.weight.grad[7].abs().sum() > 0
    with torch.no_grad():
        model.embed.tokens.weight[7] *= 2.0  # (adding a constant would not show: LayerNorm output sums to 0)
    assert not torch.allclose(model(torch.tensor([[1, 2, 3]]))[0, 0, 7], logits[0, 0, 7])


def test_with_head_keeps_the_encoder():
    torch.manual_seed(0)
    base = Bert(_tiny(use_pooler=False)).eval()
    clf = base.with_head("classify", ["a", "b"]).eval()
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(clf.encode(ids), base.encode(ids))
    assert clf(ids).shape == (1, 2)


def test_bad_config_and_input_are_clear_errors():
    with pytest.raises(ConfigError, match="divisible"):
        BertConfig(n_embd=10, n_head=3)
    with pytest.raises(ConfigError, match="labels"):
        BertConfig(head="classify", labels=["only-one"])
    with pytest.raises(ConfigError, match="head"):
        BertConfig(head="seq2seq")
    model = Bert(_tiny())
    with pytest.raises(InputError, match="block_size"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(InputError, match="batch, time"):
        model(torch.zeros(5, dtype=torch.long))


def test_presets_build():
    cfg = model_config("bert-tiny")
    assert cfg.head_dim * cfg.n_head == cfg.n_embd


def test_lmforge_folder_round_trip(tmp_path, minilm_path):
    # lmforge's own model folder (lmforge.json arch "bert") opens through lmforge.load with the same outputs.
    import lmforge
    from lmforge.io import save_model
    from lmforge.tokenizers import load_tokenizer

    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=30522, n_embd=16, n_layer=1, n_head=2, ffn_hidden=32, head="mlm")).eval()
    save_model(tmp_path, model, load_tokenizer(minilm_path))
    lm = lmforge.load(tmp_path)
    ids = torch.tensor([[101, 7592, 103, 102]])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids), model(ids))
    assert lm.model.mlm._decoder[0] is lm.model.embed.tokens  # the tie survives loading
    assert lm.embed(["hello world", "hi"]).shape == (2, 16)  # no sentence config: mean pooling


def _padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # three rows of different lengths (2, 5, 7 real tokens), right-padded with id 0; a sentence pair in row 2
    ids = torch.tensor([[4, 9, 0, 0, 0, 0, 0], [3, 8, 12, 7, 5, 0, 0], [2, 30, 31, 11, 40, 41, 6]])
    mask = (torch.arange(7)[None, :] < torch.tensor([[2], [5], [7]])).long()
    types = torch.tensor([[0] * 7, [0] * 7, [0, 0, 0, 0, 1, 1, 1]])
    return ids, mask, types


def test_mean_pooled_classifier_matches_transformers_hidden_states():
    # The "mean" head = the linear layer on the mask-weighted mean of the last hidden states, computed here from
    # transformers' own BertModel run on the same weights (padded batch, token types).
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel

    from lmforge.io.hf_bert import config_to_hf, hf_weights_from_model

    torch.manual_seed(0)
    model = Bert(_tiny(head="classify", labels=["a", "b", "c"], classifier_pooling="mean")).eval()
    encoder = model.with_head("none")  # the same encoder weights, no head: an HF BertModel's layout
    ref = BertModel(HFBertConfig(**config_to_hf(encoder.config))).eval()
    ref.load_state_dict(hf_weights_from_model(encoder), strict=True)
    ids, mask, types = _padded_batch()
    with torch.no_grad():
        hidden = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state  # (B, T, D)
        weights = mask[:, :, None].float()  # (B, T, 1)
        mean = (hidden * weights).sum(1) / weights.sum(1)  # (B, D)
        expected = mean @ model.classifier.weight.T + model.classifier.bias  # (B, n_labels)
        ours = model(ids, attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # and it is not the [CLS] head: the same weights read through the pooler give other logits
    cls = Bert(_tiny(head="classify", labels=["a", "b", "c"])).eval()
    cls.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(cls(ids, mask, types), ours, atol=1e-3)


def test_mean_pooled_classifier_ignores_padding_and_needs_no_pooler():
    torch.manual_seed(0)
    model = Bert(_tiny(head="classify", labels=["a", "b"], classifier_pooling="mean", use_pooler=False)).eval()
    assert model.pooler is None
    ids, mask, types = _padded_batch()
    with torch.no_grad():
        batched = model(ids, mask, types)
        for row, n in enumerate((2, 5, 7)):
            alone = model(ids[row : row + 1, :n], token_type_ids=types[row : row + 1, :n])
            torch.testing.assert_close(batched[row : row + 1], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="classifier_pooling"):
        _tiny(head="classify", labels=["a", "b"], classifier_pooling="max")
    # with_head keeps or switches the pooling; "cls" needs (and adds) a pooler
    assert model.with_head("classify", ["x", "y"]).config.classifier_pooling == "mean"
    switched = model.with_head("classify", ["x", "y"], "cls")
    assert switched.config.classifier_pooling == "cls" and switched.pooler is not None
