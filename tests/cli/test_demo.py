"""``lmforge demo``: the whole pipeline runs and leaves a loadable, resumable run folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import tokenizers as hf_tokenizers
import torch

import lmforge


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "lmforge", "demo", "--out", str(out), "--steps", "6",
                           "--threads", "1", "--vocab-size", "600", "--max-new-tokens", "12", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    for section in ("[1/5] tokenizer", "[2/5] data", "[3/5] training", "[4/5] generation", "[5/5] next-token"):
        assert section in text
    for name in ("tokenizer.json", "lmforge.json", "model.safetensors", "metrics.jsonl", "loss.png",
                 "data/manifest.json", "data/train.bin", "checkpoints/step-6/model.safetensors"):
        assert (out / name).is_file(), name
        assert str(out / name.split("/")[0]) in text or name.startswith(("data/", "checkpoints/"))
    assert f"lmforge generate --model {out}" in text

    # The tokenization it shows is what Hugging Face tokenizers makes of the saved tokenizer.json.
    shown = re.search(r"-> (\d+) tokens: .*\n\s+ids (\[[\d, ]+\])", text)
    sentence = re.search(r"\[1/5\].*\n\s+'(.*)'", text).group(1)
    hf = hf_tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    assert json.loads(shown.group(2)) == hf.encode(sentence, add_special_tokens=False).ids
    assert int(shown.group(1)) == len(json.loads(shown.group(2)))

    # The run folder is the trained model; the probabilities shown are its LM head's.
    lm = lmforge.load(out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7)) and "val_loss" in rows[-1]
    probe = lm.tokenizer.encode("The return statement")
    with torch.inference_mode():
        probs = torch.softmax(lm.model(torch.tensor([probe]))[0, -1], dim=-1)
    shown_top = re.search(r"\[5/5\].*\n\s+([\d.]+)%", text).group(1)
    assert float(shown_top) == round(probs.max().item() * 100, 2)
