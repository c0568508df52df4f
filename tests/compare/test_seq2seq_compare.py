"""``lmforge compare seq2seq``: three models, one budget; the printed table and report.md hold results.json's values,
and each run folder loads and translates as the report says."""

from __future__ import annotations

import json

import pytest

import lmforge
from lmforge.cli import main
from lmforge.data.parallel import read_parallel, split_pairs, synthetic_pairs
from lmforge.train.seq2seq import bleu_chrf


@pytest.mark.slow
def test_compare_writes_table_json_plot_and_loadable_runs(tmp_path, capsys):
    pairs = synthetic_pairs(200, seed=2, max_words=6)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{p.source}\t{p.target}\n" for p in pairs), encoding="utf-8")
    out = tmp_path / "cmp"
    assert main(["compare", "seq2seq", "--data", str(tsv), "--out", str(out), "--steps", "3", "--batch-size", "8",
                 "--vocab-size", "300", "--max-test", "10", "--block-size", "48", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())["models"]
    assert list(results) == ["rnn-no-attention", "rnn-attention", "transformer"]
    assert (out / "bleu_by_length.png").read_bytes()[:4] == b"\x89PNG"
    for name, row in results.items():
        line = next(x for x in printed.splitlines() if x.startswith(f"| {name} |"))
        assert f"| {row['scores']['all']['bleu']:.1f} | {row['scores']['all']['chrf']:.1f} |" in line
        assert line in (out / "report.md").read_text()
        lm = lmforge.load(out / name)
        assert lm.model.num_parameters() == row["parameters"]
        outputs = [e["output"] for e in row["examples"]]
        assert [t.strip() for t in lm.generate([e["source"] for e in row["examples"]])] == outputs
    # the overall scores are sacrebleu's on the model's translations of the first 10 test pairs
    test = split_pairs(read_parallel(tsv))["test"][:10]
    assert len(test) >= 5
    lm = lmforge.load(out / "transformer")
    hyps = [t.strip() for t in lm.generate([p.source for p in test])]
    bleu, chrf = bleu_chrf(hyps, [p.target for p in test])
    assert results["transformer"]["scores"]["all"] == {"bleu": bleu, "chrf": chrf, "n": len(test)}
