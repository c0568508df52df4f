"""lmforge's BERT vs transformers' on tiny random checkpoints saved with ``save_pretrained``: every architecture
we import gives the same outputs (≤ 1e-4), and what we export loads back into transformers unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    BertConfig as HFBertConfig,
)
from transformers import (
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

from lmforge.errors import FormatError
from lmforge.io.hf_bert import config_from_hf, load_hf_bert, model_from_hf_weights, save_hf_bert
from lmforge.io.hf_files import read_hf_weights

ARCHS = [BertModel, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification]


def _hf_config(**kw) -> HFBertConfig:
    base = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                max_position_embeddings=64, num_labels=3)
    base.update(kw)
    return HFBertConfig(**base)


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 99, (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0  # padded rows of different lengths
    mask[2, 3:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1  # a sentence pair: segment B starts at position 5
    return ids, mask, types


def _hf_out(model, ids, mask, types) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    return out.last_hidden_state if isinstance(model, BertModel) else out.logits


def _max_err(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    if a.dim() == 3:  # padding positions carry no meaning: compare real tokens only
        return float(((a - b) * mask[..., None]).abs().max())
    return float((a - b).abs().max())


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.__name__)
def test_import_matches_transformers(arch, tmp_path):
    torch.manual_seed(0)
    ref = arch(_hf_config()).eval()
    ref.save_pretrained(tmp_path)
    cfg = config_from_hf(json.loads((tmp_path / "config.json").read_text()))
    ours = model_from_hf_weights(cfg, read_hf_weights(tmp_path)).eval()
    ids, mask, types = _inputs()
    expected = _hf_out(ref, ids, mask, types)
    with torch.no_grad():
        got = ours(ids, mask, types)
    assert got.shape == expected.shape
    assert _max_err(got, expected, mask) <= 1e-4


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.__name__)
def test_export_loads_in_transformers(arch, tmp_path):
    torch.manual_seed(0)
    ref = arch(_hf_config(hidden_act="gelu_new")).eval()
    ref.save_pretrained(tmp_path / "src")
    cfg = config_from_hf(json.loads((tmp_path / "src" / "config.json").read_text()))
    ours = model_from_hf_weights(cfg, read_hf_weights(tmp_path / "src"))
    save_hf_bert(ours, tmp_path / "out")
    back = arch.from_pretrained(tmp_path / "out").eval()
    ids, mask, types = _inputs()
    assert _max_err(_hf_out(back, ids, mask, types), _hf_out(ref, ids, mask, types), mask) == 0.0
    if arch is BertForSequenceClassification:
        assert back.config.id2label == ref.config.id2label


def test_real_minilm_hidden_states_match(minilm_path):
    ref = BertModel.from_pretrained(minilm_path).eval()
    cfg = config_from_hf(json.loads((minilm_path / "config.json").read_text()))
    ours = model_from_hf_weights(cfg, read_hf_weights(minilm_path)).eval()
    assert (cfg.n_embd, cfg.n_layer, cfg.vocab_size) == (384, 6, 30522)
    ids = torch.tensor([
        [101, 7592, 2088, 2003, 1037, 3231, 102, 0, 0],
        [101, 2023, 2003, 2178, 6251, 1012, 2009, 2003, 102],
    ])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    with torch.no_grad():
        got = ours(ids, mask)
    assert _max_err(got, _hf_out(ref, ids, mask, types), mask) <= 1e-4


def test_mismatched_weights_are_a_clear_error(tmp_path):
    torch.manual_seed(0)
    BertModel(_hf_config()).save_pretrained(tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    hf["hidden_size"] = 64  # config.json no longer describes the weights
    hf["num_attention_heads"] = 4
    with pytest.raises(FormatError, match="shape"):
        model_from_hf_weights(config_from_hf(hf), read_hf_weights(tmp_path))
    with pytest.raises(FormatError, match="config.json"):
        (tmp_path / "config.json").write_text("{not json")
        load_hf_bert(tmp_path)


def test_sharded_checkpoint_loads(tmp_path):
    """A BERT saved in shards (model.safetensors.index.json + several files) loads like a single-file one."""
    import lmforge

    torch.manual_seed(0)
    ref = BertForMaskedLM(_hf_config()).eval()
    ref.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and not (tmp_path / "model.safetensors").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                                  + [f"w{i}" for i in range(94)]) + "\n")  # the config's 99
    ours = lmforge.load(tmp_path).model
    ids, mask, types = _inputs()
    with torch.no_grad():
        got = ours(ids, mask, types)
    assert _max_err(got, _hf_out(ref, ids, mask, types), mask) <= 1e-4


# ---------------------------------------------------------------- at a large init: a wrong switch is far

BIG_INIT = 0.3  # at transformers' default 0.02 attention is nearly uniform and a wrong mask moves outputs ~1e-4


def _big_pair(arch, tmp_path, **kw):
    """(transformers model at init std 0.3, our model read from its saved folder, our config)."""
    torch.manual_seed(0)
    ref = arch(_hf_config(initializer_range=BIG_INIT, **kw)).eval()
    ref.save_pretrained(tmp_path)
    cfg = config_from_hf(json.loads((tmp_path / "config.json").read_text()))
    return ref, model_from_hf_weights(cfg, read_hf_weights(tmp_path)).eval(), cfg


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.__name__)
def test_import_matches_transformers_at_a_large_init_and_wrong_switches_are_far(arch, tmp_path):
    from dataclasses import replace

    ref, ours, cfg = _big_pair(arch, tmp_path)
    ids, mask, types = _inputs()
    expected = _hf_out(ref, ids, mask, types)
    with torch.no_grad():
        got = ours(ids, mask, types)
        no_mask = ours(ids, None, types)  # padding attended to
        no_types = ours(ids, mask, None)  # segment B read as segment A
        other_act = model_from_hf_weights(replace(cfg, mlp="gelu_tanh"), read_hf_weights(tmp_path)).eval()(
            ids, mask, types)
    assert _max_err(got, expected, mask) <= 1e-4
    scale = float(expected.abs().max())
    assert scale > 1.0  # outputs are not squashed near zero, so the gaps below mean something
    assert _max_err(no_mask, expected, mask) > 0.1
    assert _max_err(no_types, expected, mask) > 0.1
    # tanh-approximated GELU, the closest wrong switch: measured 5.5e-4 (classifier) .. 4.1e-3 (MLM), 5x+ the 1e-4
    # tolerance; the missing mask and token types: measured 1.7 .. 7.1
    assert _max_err(other_act, expected, mask) > 4e-4


def test_cls_and_mean_pooling_each_match_transformers_and_are_far_apart(tmp_path):
    """The [CLS]-pooled classifier equals BertForSequenceClassification; the mean-pooled one equals the linear layer
    on the mask-weighted mean of transformers' hidden states; on this model the two differ by far more than the
    tolerance, so this parity can tell one pooling from the other."""
    ref, ours_cls, cfg = _big_pair(BertForSequenceClassification, tmp_path)
    ours_mean = ours_cls.with_head("classify", cfg.labels, "mean").eval()
    ours_mean.classifier.load_state_dict(ours_cls.classifier.state_dict())  # the same linear layer on either input
    ids, mask, types = _inputs()
    with torch.no_grad():
        cls_expected = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits  # (B, n_labels)
        hidden = ref.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state  # (B, T, D)
        w = mask[:, :, None].float()  # (B, T, 1)
        mean_expected = ref.classifier((hidden * w).sum(1) / w.sum(1))  # (B, n_labels)
        got_cls, got_mean = ours_cls(ids, mask, types), ours_mean(ids, mask, types)
    assert float((got_cls - cls_expected).abs().max()) <= 1e-4
    assert float((got_mean - mean_expected).abs().max()) <= 1e-4
    assert float((cls_expected - mean_expected).abs().max()) > 0.1  # measured 1.84
