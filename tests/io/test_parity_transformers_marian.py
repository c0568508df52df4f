"""MarianMT folders: lmforge's Transformer against transformers' MarianMTModel (the oracle) on a tiny random model
with large weights (init_std=0.2), embedding scaling, swish and a random final_logits_bias."""

from __future__ import annotations

import pytest
import torch

import lmforge
from lmforge.errors import FormatError
from lmforge.generate import generate_ids
from lmforge.io.hf_marian import save_marian
from lmforge.models.transformer import marian_sinusoids

transformers = pytest.importorskip("transformers")

PAD, EOS = 96, 0
SOURCES = [[5, 6, 7, 8, 9, 10, 11, EOS], [12, 13, EOS], [14, 15, 16, 17, EOS]]


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.MarianConfig(
        vocab_size=97, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64,
        init_std=0.2, scale_embedding=True, activation_function="swish", pad_token_id=PAD, eos_token_id=EOS,
        decoder_start_token_id=PAD, forced_eos_token_id=None, dropout=0.0,
    )
    model = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():
        model.final_logits_bias.copy_(torch.randn_like(model.final_logits_bias))
    folder = tmp_path_factory.mktemp("marian")
    model.save_pretrained(folder)
    return model, folder


def _batch():
    ids = torch.full((3, 8), PAD)
    mask = torch.zeros(3, 8, dtype=torch.long)
    for r, s in enumerate(SOURCES):
        ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
    dec = torch.randint(1, 96, (3, 7), generator=torch.Generator().manual_seed(3))
    dec[:, 0] = PAD
    return ids, mask, dec


def _rel_error(ours, ref):
    return float((ours - ref).abs().max() / ref.abs().max())


def test_logits_match_with_source_padding(marian):
    ref_model, folder = marian
    lm = lmforge.load(folder)
    ids, mask, dec = _batch()
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        ours = lm.model(ids, dec, mask)
    assert ref.abs().max() > 5  # the scale the tolerance is relative to
    assert _rel_error(ours, ref) < 1e-4


@pytest.mark.parametrize("flip", ["scale_embedding", "prenorm", "position_offset", "interleaved_sinusoids"])
def test_each_wrong_switch_is_far_outside_the_tolerance(marian, flip):
    ref_model, folder = marian
    lm = lmforge.load(folder)
    model = lm.model
    if flip == "scale_embedding":
        model.embed_scale = 1.0
    elif flip == "prenorm":  # the same weights read as pre-norm blocks
        model.config.prenorm = True
        for block in [*model.encoder_blocks, *model.decoder_blocks]:
            block.prenorm = True
        model.encoder_norm = torch.nn.Identity()
        model.decoder_norm = torch.nn.Identity()
    elif flip == "position_offset":  # BART's offset of 2
        model.positions = torch.cat([marian_sinusoids(2, 64), model.positions])[:64]
    else:
        from lmforge.nn.positions import sinusoidal_table

        model.positions = sinusoidal_table(64, 64)
    ids, mask, dec = _batch()
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        ours = model(ids, dec, mask)
    assert _rel_error(ours, ref) > 1e-2  # >= 100x the tolerance


@pytest.mark.parametrize("num_beams", [1, 3])
def test_greedy_and_beam_equal_transformers_generate(marian, num_beams):
    ref_model, folder = marian
    lm = lmforge.load(folder)
    ids, mask, _ = _batch()
    ref = ref_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                             num_beams=num_beams)
    ours = generate_ids(lm.model, SOURCES, max_new_tokens=12, num_beams=num_beams)
    for r in range(3):
        expected = [t for t in ref[r, 1:].tolist() if t != PAD]  # drop the start token and the padding
        if expected and expected[-1] == EOS:
            expected = expected[:-1]
        assert ours.new_ids[r] == expected


def test_export_round_trips(marian, tmp_path):
    ref_model, folder = marian
    lm = lmforge.load(folder)
    save_marian(tmp_path / "out", lm.model)
    again = transformers.MarianMTModel.from_pretrained(tmp_path / "out").eval()
    ids, mask, dec = _batch()
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        back = again(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        ours_again = lmforge.load(tmp_path / "out").model(ids, dec, mask)
    assert _rel_error(back, ref) < 1e-6
    assert _rel_error(ours_again, ref) < 1e-4


def test_missing_tensor_is_named(marian, tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = marian
    state = load_file(str(folder / "model.safetensors"))
    del state["model.decoder.layers.1.fc2.weight"]
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(FormatError, match="decoder.layers.1.fc2.weight"):
        lmforge.load(tmp_path)
