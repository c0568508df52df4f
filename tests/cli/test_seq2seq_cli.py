"""``lmforge train seq2seq`` / ``translate`` / ``eval`` on an encoder–decoder: printed values equal the library's
answers (translations; BLEU and chrF recomputed with sacrebleu), the run folder loads and resumes, the attention
heat map is written, and bad input is one line + exit code 1."""

from __future__ import annotations

import json

import pytest
import sacrebleu

import lmforge
from lmforge.cli import main
from lmforge.data.parallel import synthetic_pairs

SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--ffn-hidden", "64", "--block-size", "64",
         "--vocab-size", "300", "--batch-size", "16", "--warmup-steps", "2", "--eval-every", "5", "--eval-batches", "1",
         "--checkpoint-every", "5", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2s")
    pairs = synthetic_pairs(300, seed=5, max_words=8)
    tsv = root / "pairs.tsv"
    tsv.write_text("".join(f"{p.source}\t{p.target}\n" for p in pairs), encoding="utf-8")
    out = root / "run"
    assert main(["train", "seq2seq", "--arch", "transformer", "--data", str(tsv), "--out", str(out), "--steps", "5",
                 *SHAPE]) == 0
    return root, tsv, out


def test_run_folder_loads_and_resumes(run, capsys):
    root, tsv, out = run
    lm = lmforge.load(out)
    assert type(lm.model).__name__ == "Transformer" and lm.model.config.n_layer == 1
    info = json.loads((out / "seq2seq.json").read_text())
    assert info["arch"] == "transformer" and sum(info["pairs"].values()) == 300
    capsys.readouterr()
    assert main(["train", "seq2seq", "--arch", "transformer", "--data", str(tsv), "--out", str(out), "--steps", "8",
                 "--resume", *SHAPE]) == 0
    printed = capsys.readouterr().out
    assert "resumed from the step-5 checkpoint" in printed and "finished at step 8" in printed


def test_translate_prints_the_library_translations(run, capsys, tmp_path, monkeypatch):
    _, _, out = run
    lm = lmforge.load(out)
    sentences = ["the big dog sees a cat", "a king feeds the fish"]
    assert main(["translate", "--model", str(out), *sentences]) == 0
    assert capsys.readouterr().out.splitlines() == [t.strip() for t in lm.generate(sentences)]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    assert main(["translate", "--model", str(out), "--file", str(f), "--beams", "3", "--batch-size", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [t.strip() for t in lm.generate(sentences, num_beams=3)]
    png = tmp_path / "att.png"
    assert main(["translate", "--model", str(out), sentences[0], "--show-attention", str(png), "--head", "1"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reports_sacrebleu_of_the_translations(run, capsys):
    _, tsv, out = run
    lm = lmforge.load(out)
    pairs = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()][:20]
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--data", str(tsv), "--max-windows", "20"]) == 0
    printed = capsys.readouterr().out
    hyps = [t.strip() for t in lm.generate([s for s, _ in pairs])]
    bleu = sacrebleu.corpus_bleu(hyps, [[t for _, t in pairs]]).score
    chrf = sacrebleu.corpus_chrf(hyps, [[t for _, t in pairs]]).score
    assert f"BLEU {bleu:.2f}, chrF {chrf:.2f} (20 sentence pairs" in printed


def test_bad_input_is_one_line_and_exit_1(run, tmp_path, capsys):
    _, _, out = run
    bad = tmp_path / "bad.tsv"
    bad.write_text("a b c\td e f\nno tab on this line\n", encoding="utf-8")
    assert main(["train", "seq2seq", "--data", str(bad), "--out", str(tmp_path / "r"), "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: expected 'source<TAB>target'" in err and "Traceback" not in err
    long = tmp_path / "long.tsv"
    long.write_text("w " * 10 + "\tv\n", encoding="utf-8")
    assert main(["train", "seq2seq", "--data", str(long), "--out", str(tmp_path / "r2"), "--steps", "1",
                 "--block-size", "4", "--vocab-size", "270"]) == 1
    assert f"{long}:1: the source sentence has" in capsys.readouterr().err
    assert main(["translate", "--model", str(out), "word " * 80]) == 1
    assert "more than the model allows" in capsys.readouterr().err
    assert main(["train", "seq2seq", "--arch", "transformer", "--attention", "dot", "--data", "synthetic",
                 "--out", str(tmp_path / "r3")]) == 1
    assert "--attention is an RNN switch" in capsys.readouterr().err
