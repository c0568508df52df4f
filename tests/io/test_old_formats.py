"""Folders written by an older lmforge (before one config vocabulary; see tests/fixtures/old_format/make_fixtures.py)
still load, with the old field names mapped on read, and give exactly the logits they gave when written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lmforge
from lmforge.train.checkpoint import latest_checkpoint, load_checkpoint

OLD = Path(__file__).parent.parent / "fixtures" / "old_format"
EXPECTED = load_file(str(OLD / "expected.safetensors"))


@pytest.mark.parametrize("name", ["gpt", "llama", "gpt_run", "bert_mlm", "bert_mean_classifier", "bert_run"])
def test_old_folder_loads_with_identical_logits(name):
    lm = lmforge.load(OLD / name)
    with torch.no_grad():
        if name.startswith("bert"):
            logits = lm.model(EXPECTED["bert_ids"], EXPECTED["bert_mask"])
        else:
            logits = lm.model(EXPECTED["gpt_ids"])
    torch.testing.assert_close(logits, EXPECTED[f"{name}_logits"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["gpt_run", "bert_run"])
def test_old_run_checkpoint_resumes_into_the_new_config(name, tmp_path):
    """A checkpoint's meta.json records the model config in the old names; resuming compares it with this run's
    config (new names) and must see no difference, and the weights it restores give the same logits."""
    run = shutil.copytree(OLD / name, tmp_path / name)
    lm = lmforge.load(run)
    model = type(lm.model)(lm.config).eval()
    state = load_checkpoint(latest_checkpoint(run / "checkpoints"), model, expected_model_config=lm.config.to_dict())
    assert state["step"] == 2
    with torch.no_grad():
        if name.startswith("bert"):
            logits = model(EXPECTED["bert_ids"], EXPECTED["bert_mask"])
        else:
            logits = model(EXPECTED["gpt_ids"])
    torch.testing.assert_close(logits, EXPECTED[f"{name}_logits"], rtol=0, atol=0)
