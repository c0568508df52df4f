"""The BERT commands end to end, in-process: embed, search, train bert → fill-mask (and transformers opens the
run folder), finetune → predict, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.io.hf_bert import save_hf_bert
from lmforge.models.bert import Bert, BertConfig

pytestmark = pytest.mark.xdist_group("minilm")


def test_embed_prints_and_saves(minilm_path, tmp_path, capsys):
    texts = ["A man is eating food.", "Someone eats a meal.", "The sky is blue."]
    assert main(["embed", "--model", str(minilm_path), *texts]) == 0
    out = capsys.readouterr().out
    assert "dim 384, norm 1.0000" in out and "cosine similarity" in out
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["embed", "--model", str(minilm_path), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "e.npy")]) == 0
    saved = np.load(tmp_path / "e.npy")
    np.testing.assert_allclose(saved, lmforge.load(minilm_path).embed(texts), atol=1e-6)


def test_search_ranks_lines_and_reuses_cache(minilm_path, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("how to bake bread\nthe stock market fell today\n\nfootball results\n", encoding="utf-8")
    args = ["search", "--model", str(minilm_path), "--corpus", str(corpus), "-k", "2",
            "--cache", str(tmp_path / "c.npy"), "sports scores"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "1." in first and "[line 4] football results" in first.splitlines()[1]
    assert (tmp_path / "c.npy").exists()
    assert main(args) == 0
    assert capsys.readouterr().out == first
    corpus.write_text("how to bake bread\nfootball results\n", encoding="utf-8")  # edited: the cache is stale
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "re-embedding" in captured.err and "[line 2] football results" in captured.out


def test_train_bert_then_fill_mask(tmp_path, capsys):
    from lmforge.data.corpus import builtin_documents

    text = tmp_path / "docs.txt"
    text.write_text("\n\n".join(builtin_documents()[:12]), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "bert", "--text", str(text), "--out", str(out), "--vocab-size", "1000", "--seq-len", "32",
                 "--steps", "8", "--batch-size", "8", "--n-embd", "32", "--n-layer", "1", "--n-head", "2",
                 "--ffn-hidden", "64", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "masked-token accuracy" in printed and "frequency baseline" in printed
    assert main(["fill-mask", "--model", str(out), "-k", "3", "the [MASK] statement"]) == 0
    assert "[MASK] #1:" in capsys.readouterr().out
    # The run folder is an HF BertForMaskedLM folder: transformers computes the same logits.
    from transformers import BertForMaskedLM

    lm = lmforge.load(out)
    ref = BertForMaskedLM.from_pretrained(out).eval()
    ids = torch.tensor([lm.tokenizer.encode("the for statement is used")])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids), ref(input_ids=ids).logits, atol=1e-4, rtol=1e-4)


def test_finetune_and_predict(minilm_path, tmp_path, capsys):
    torch.manual_seed(0)
    base = save_hf_bert(Bert(BertConfig(vocab_size=30522, n_embd=32, n_layer=1, n_head=2, ffn_hidden=64,
                                        block_size=64, dropout=0.0)), tmp_path / "base",
                        tokenizer_source=minilm_path)
    rows = ["text,sentiment"] + [f"{w} film,{'pos' if w == 'great' else 'neg'}" for w in ["great", "awful"] * 40]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    common = ["--model", str(base), "--train", str(tmp_path / "train.csv"), "--out", str(tmp_path / "clf"),
              "--no-progress"]
    # a label column that does not exist: one clear line, exit code 1
    assert main(["finetune", "classify", *common]) == 1
    assert "no column 'label'" in capsys.readouterr().err
    assert main(["finetune", "classify", *common, "--label-column", "sentiment", "--eval",
                 str(tmp_path / "train.csv"), "--epochs", "8", "--lr", "3e-3", "--batch-size", "16"]) == 0
    assert "accuracy 1.0000" in capsys.readouterr().out
    assert json.loads((tmp_path / "clf" / "metrics.json").read_text())["accuracy"] == 1.0
    assert main(["predict", "--model", str(tmp_path / "clf"), "great film", "awful film"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pos\t") and lines[1].startswith("neg\t")


def test_errors_are_one_line(minilm_path, tmp_path, capsys):
    assert main(["fill-mask", "--model", str(minilm_path), "a [MASK] here"]) == 1
    assert "no masked-LM head" in capsys.readouterr().err
    # A checkpoint whose vocabulary does not match its tokenizer.
    torch.manual_seed(0)
    save_hf_bert(Bert(BertConfig(vocab_size=1000, n_embd=16, n_layer=1, n_head=2, ffn_hidden=32)), tmp_path / "m",
                 tokenizer_source=minilm_path)
    assert main(["embed", "--model", str(tmp_path / "m"), "hello"]) == 1
    err = capsys.readouterr().err
    assert "vocab_size=1000" in err and "do not belong together" in err
    assert main(["embed", "--model", str(minilm_path)]) == 1
    assert "no text given" in capsys.readouterr().err
    assert main(["predict", "--model", str(minilm_path), "text"]) == 1
    assert "fine-tuned" in capsys.readouterr().err


def test_finetune_pooling_default_and_override(minilm_path, tmp_path, capsys):
    # A mean-pooling sentence-transformers folder: the classifier reads the mean by default (an lmforge folder
    # that predict opens); --pooling cls gives BERT's [CLS] classifier in an HF folder.
    from lmforge.embed import SentenceConfig

    torch.manual_seed(0)
    base = save_hf_bert(Bert(BertConfig(vocab_size=30522, n_embd=32, n_layer=1, n_head=2, ffn_hidden=64,
                                        block_size=64, dropout=0.0)), tmp_path / "st",
                        tokenizer_source=minilm_path, sentence_config=SentenceConfig(("mean",)))
    rows = ["text,label"] + [f"{w} film,{'pos' if w == 'great' else 'neg'}" for w in ["great", "awful"] * 40]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    common = ["--model", str(base), "--train", str(tmp_path / "train.csv"), "--eval", str(tmp_path / "train.csv"),
              "--no-progress", "--epochs", "8", "--lr", "3e-3", "--batch-size", "16"]
    assert main(["finetune", "classify", *common, "--out", str(tmp_path / "mean")]) == 0
    out = capsys.readouterr().out
    assert "classifier input: mean pooling" in out and "accuracy 1.0000" in out
    assert json.loads((tmp_path / "mean" / "metrics.json").read_text())["pooling"] == "mean"
    assert (tmp_path / "mean" / "lmforge.json").is_file() and not (tmp_path / "mean" / "config.json").exists()
    assert main(["predict", "--model", str(tmp_path / "mean"), "great film", "awful film"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pos\t") and lines[1].startswith("neg\t")
    assert main(["finetune", "classify", *common, "--out", str(tmp_path / "cls"), "--pooling", "cls"]) == 0
    assert "classifier input: cls pooling" in capsys.readouterr().out
    assert (tmp_path / "cls" / "config.json").is_file() and not (tmp_path / "cls" / "lmforge.json").exists()
    with pytest.raises(SystemExit):
        main(["finetune", "classify", *common, "--out", str(tmp_path / "x"), "--pooling", "max"])
    assert "invalid choice" in capsys.readouterr().err
