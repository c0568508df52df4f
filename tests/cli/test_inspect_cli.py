"""``lmforge inspect``: the printed probabilities, greedy steps, logit lens and masked-token candidates are the
library's values (softmax of the model's logits); ``--out`` images hold the returned weights; bad input is one line."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import lmforge
from lmforge import plot
from lmforge.cli import main
from lmforge.probe import logit_lens, probe
from tests.probe_helpers import make_bert_folder, make_gpt_folder

TEXT = "The interpreter reads the"
ROW = re.compile(r"^\s+(\d\.\d{6})\s+[█▌]*\s+'(.*)' \(id (\d+)\)$")


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory):
    return make_gpt_folder(tmp_path_factory.mktemp("gpt"))


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_folder(tmp_path_factory.mktemp("bert"))


def _rows(lines):
    return [(float(m[1]), int(m[3])) for m in map(ROW.match, lines) if m]


def test_printed_probabilities_are_softmax_of_logits(gpt_dir, capsys):
    assert main(["inspect", "--model", str(gpt_dir), TEXT, "-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lm = lmforge.load(gpt_dir)
    ids = lm.tokenizer.encode(TEXT)
    assert lines[1] == " ".join(f"{i}:{t!r}" for i, t in zip(ids, probe(lm, TEXT).tokens, strict=True))
    expected = torch.softmax(lm.model(torch.tensor([ids]))[0, -1], -1).topk(5)
    rows = _rows(lines)
    assert [i for _, i in rows] == expected.indices.tolist()
    assert [p for p, _ in rows] == pytest.approx(expected.values.tolist(), abs=1e-6)


def test_steps_and_lens(gpt_dir, capsys):
    assert main(["inspect", "--model", str(gpt_dir), TEXT, "-k", "3", "--steps", "2", "--lens"]) == 0
    out = capsys.readouterr().out
    lm = lmforge.load(gpt_dir)
    ids = lm.tokenizer.encode(TEXT)
    for n in (1, 2):
        chosen = int(re.search(rf"^step {n}: .* \(id (\d+), p=", out, re.M)[1])
        assert chosen == lm.model(torch.tensor([ids]))[0, -1].argmax().item()
        ids.append(chosen)
    lens = logit_lens(lm, probe(lm, TEXT))
    printed = re.findall(r"^\s+(?:embeddings|after layer \d)\s+(\d\.\d{6})\s+'(.*)'$", out, re.M)
    assert [(float(p), t) for p, t in printed] == [(pytest.approx(p[0][0], abs=1e-6), t[0][0])
                                                  for p, t in zip(lens["probs"], lens["tokens"], strict=True)]


def test_out_images_show_the_weights(gpt_dir, tmp_path, capsys):
    out = tmp_path / "img"
    assert main(["inspect", "--model", str(gpt_dir), TEXT, "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"attention_grid.png", "next_token.png", "logit_lens.png", "attention_L1_H3.png"} <= names
    assert len([n for n in names if n.startswith("attention_L")]) == 8  # 2 layers x 4 heads
    lm = lmforge.load(gpt_dir)
    pr = probe(lm, TEXT)
    a, b = (plot.attention_heatmap(pr.attention(0, h), pr.tokens) for h in (0, 1))
    shown = np.asarray(a.axes[0].images[0].get_array())
    np.testing.assert_array_equal(shown, pr.attention(0, 0).numpy())
    assert np.abs(shown - np.asarray(b.axes[0].images[0].get_array())).max() > 0.1  # two heads, two pictures
    assert (out / "attention_L0_H0.png").read_bytes() != (out / "attention_L0_H1.png").read_bytes()
    grid = plot.attention_grid(pr.attentions)
    np.testing.assert_array_equal(np.asarray(grid.axes[4 + 2].images[0].get_array()), pr.attention(1, 2).numpy())


def test_bert_mask_candidates(bert_dir, capsys):
    assert main(["inspect", "--model", str(bert_dir), "w3 [MASK] w7", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "[MASK] at position 2:" in out
    lm = lmforge.load(bert_dir)
    ids = lm.tokenizer.encode("w3 [MASK] w7")
    expected = torch.softmax(lm.model(torch.tensor([ids]))[0, 2], -1).topk(3)
    rows = _rows(out.splitlines())
    assert [i for _, i in rows] == expected.indices.tolist()
    assert [p for p, _ in rows] == pytest.approx(expected.values.tolist(), abs=1e-6)


def test_word2vec_neighbours_and_map(tmp_path, capsys):
    from lmforge.represent import KeyedVectors

    words = ["king", "queen", "man", "woman", "apple", "pear"]
    kv = KeyedVectors(words, np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32))
    kv.save(tmp_path / "v.safetensors")
    assert main(["inspect", "--model", str(tmp_path / "v.safetensors"), "king", "-k", "3",
                 "--out", str(tmp_path / "img")]) == 0
    printed = re.findall(r"^\s+(-?\d\.\d{6})\s+(\w+)$", capsys.readouterr().out, re.M)
    assert [(w, float(s)) for s, w in printed] == [(w, pytest.approx(s, abs=1e-6)) for w, s in
                                                    kv.most_similar("king", topn=3)]
    assert (tmp_path / "img" / "embedding_map.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["   "], "the text is empty"),
    (["word " * 100], "context window is 64 tokens"),
    ([TEXT, "--out", "{tmp}", "--layer", "2"], "--layer 2 does not exist: this model has layers 0..1"),
    ([TEXT, "--out", "{tmp}", "--head", "9"], "--head 9 does not exist: this model has heads 0..3"),
    ([TEXT, "-k", "0"], "--top-k must be at least 1"),
])
def test_bad_input_is_one_line(gpt_dir, tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["inspect", "--model", str(gpt_dir), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmforge: error: ") and message in err and "\n" not in err


@pytest.mark.parametrize("command", ["inspect", "ui"])
def test_model_without_attention_is_one_line(monkeypatch, tmp_path, capsys, command):
    from types import SimpleNamespace

    no_attention = SimpleNamespace(model=torch.nn.Linear(2, 2), tokenizer=None, path=tmp_path)
    monkeypatch.setattr(lmforge, "load", lambda *a, **k: no_attention)
    argv = [command, "--model", str(tmp_path)] + (["some text", "--out", str(tmp_path)] if command == "inspect" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == "lmforge: error: Linear has no attention layers to inspect (GPT and BERT models have)"
