"""``lmforge finetune tag|pair`` and ``lmforge predict`` through the CLI: the printed evaluation and predictions
equal the library's answers on the saved model (``evaluate_examples`` / ``predict``), to the printed digits."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lmforge.cli import main
from lmforge.io.hf_bert import save_hf_bert
from lmforge.models.bert import Bert, BertConfig
from lmforge.train.finetune import evaluate_examples, predict, read_examples

pytestmark = pytest.mark.xdist_group("minilm")


@pytest.fixture(scope="module")
def base(minilm_path, tmp_path_factory):
    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=30522, n_embd=32, n_layer=1, n_head=2, ffn_hidden=64, block_size=64,
                            dropout=0.0))
    return save_hf_bert(model, tmp_path_factory.mktemp("base"), tokenizer_source=minilm_path)


def _eval_line(out: str) -> dict[str, float]:
    line = next(x for x in out.splitlines() if x.startswith("eval: "))
    return {k: float(v) for k, v in (item.split(" ") for item in line[len("eval: "):].split(", "))}


def _check_eval(out: str, folder, data, kind, columns):
    import lmforge

    lm = lmforge.load(folder)
    expected = evaluate_examples(lm.model, lm.tokenizer, read_examples(data, kind, columns), kind, 128)
    printed = _eval_line(out)
    assert printed.keys() == expected.keys()
    for k, v in expected.items():
        assert printed[k] == pytest.approx(v, abs=5e-5), k  # printed with 4 decimals
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["kind"] == kind and {k: saved[k] for k in expected} == pytest.approx(expected, abs=1e-12)


def test_finetune_tag_then_predict_prints_the_library_values(base, tmp_path, capsys):
    rng = random.Random(0)
    names, words = "smith jones brown".split(), "went to the city and saw river".split()
    rows = []
    for _ in range(48):
        toks, at = rng.sample(words, 4), rng.randrange(4)
        toks[at:at] = ["mr", rng.choice(names)]
        tags = ["O"] * len(toks)
        tags[at + 1] = "B-PER"
        rows.append(json.dumps({"tokens": toks, "tags": tags}))
    data = tmp_path / "tags.jsonl"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out_dir = tmp_path / "tagger"
    assert main(["finetune", "tag", "--model", str(base), "--train", str(data), "--eval", str(data), "--out",
                 str(out_dir), "--epochs", "2", "--lr", "3e-3", "--batch-size", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "labels: B-PER, O" in out
    _check_eval(out, out_dir, data, "tag", None)
    texts = ["yesterday mr jones went to the city", "mr smith saw river"]
    assert main(["predict", "--model", str(out_dir), *texts]) == 0
    expected = predict(out_dir, texts)
    assert capsys.readouterr().out.splitlines() == [" ".join(f"{w}/{t}" for w, t in p.tags) for p in expected]
    assert main(["predict", "--model", str(out_dir), "--json", *texts]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [g["tags"] for g in got] == [[list(t) for t in p.tags] for p in expected]
    assert [g["score"] for g in got] == pytest.approx([p.score for p in expected], abs=1e-7)


def test_finetune_pair_then_predict_prints_the_library_values(base, tmp_path, capsys):
    rng = random.Random(1)
    filler = "the a car house tree dog".split()
    rows = ["first,second,which"]
    for _ in range(48):
        a, b, in_second = rng.sample(filler, 3), rng.sample(filler, 3), rng.random() < 0.5
        (b if in_second else a).insert(1, "excellent")
        rows.append(f"{' '.join(a)},{' '.join(b)},{'second' if in_second else 'first'}")
    data = tmp_path / "pairs.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out_dir = tmp_path / "pairs"
    columns = ["--text-column", "first", "--pair-column", "second", "--label-column", "which"]
    assert main(["finetune", "pair", "--model", str(base), "--train", str(data), "--eval", str(data), "--out",
                 str(out_dir), *columns, "--epochs", "2", "--lr", "3e-3", "--batch-size", "16",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "labels: first, second" in out
    _check_eval(out, out_dir, data, "pair", {"text": "first", "text_pair": "second", "label": "which"})
    texts, pairs = ["the excellent car", "a red dog"], ["a red dog", "the excellent car"]
    assert main(["predict", "--model", str(out_dir), *texts, "--pair", pairs[0], "--pair", pairs[1]]) == 0
    expected = predict(out_dir, texts, pairs=pairs)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{p.label}\t{p.score:.4f}\t{t}" for p, t in zip(expected, texts, strict=True)]
    assert main(["predict", "--model", str(out_dir), "--json", *texts, "--pair", pairs[0], "--pair", pairs[1]]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(g["label"], g["score"]) for g in got] == [(p.label, pytest.approx(p.score, abs=1e-7)) for p in expected]
