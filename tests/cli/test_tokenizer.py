"""``lmforge tokenizer train|encode|show|explain`` end to end, and bad input: one message, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmforge.cli import main
from lmforge.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    assert main(["tokenizer", "train", "--vocab-size", "600", "--out", str(folder / "tok")]) == 0
    return folder / "tok"


def test_train_on_builtin_corpus_writes_a_loadable_tokenizer(trained, capsys):
    tok = load_tokenizer(trained)
    assert tok.vocab_size == 600 and tok.special_tokens == {"<|endoftext|>": 599}


def test_train_on_user_files_and_formats(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("the cat sat on the mat " * 50)
    (tmp_path / "docs" / "b.md").write_text("a dog and a cat " * 50)
    rc = main(["tokenizer", "train", str(tmp_path / "docs"), "--vocab-size", "280", "--format", "hf",
               "--out", str(tmp_path / "hf")])
    assert rc == 0 and "docs" in capsys.readouterr().out
    tok = load_tokenizer(tmp_path / "hf")
    assert len(tok.encode(" cat", add_special_tokens=False)) == 1
    rc = main(["tokenizer", "train", str(tmp_path / "docs" / "*.txt"), "--kind", "wordpiece", "--vocab-size", "60",
               "--format", "bert", "--out", str(tmp_path / "wp")])
    assert rc == 0 and load_tokenizer(tmp_path / "wp" / "vocab.txt").kind == "wordpiece"


def test_encode_text_and_corpus(trained, tmp_path, capsys):
    assert main(["tokenizer", "encode", "hello world", "-t", str(trained)]) == 0
    ids = [int(x) for x in capsys.readouterr().out.split()]
    assert ids == load_tokenizer(trained).encode("hello world")
    out = tmp_path / "ids.jsonl"
    assert main(["tokenizer", "encode", "-t", str(trained), "--out", str(out)]) == 0
    assert "tokens" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    from lmforge.data.corpus import builtin_documents

    assert len(rows) == len(builtin_documents()) and rows[0] == load_tokenizer(trained).encode(builtin_documents()[0])


def test_show_and_explain(trained, capsys):
    assert main(["tokenizer", "show", "Hello", "tokenizers!", "-t", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # not a terminal: plain
    tok = load_tokenizer(trained)
    ids = tok.encode("Hello tokenizers!")
    assert " ".join(f"{i}:" for i in ids[:1]) in out and f"{len(ids)} tokens" in out
    assert main(["tokenizer", "explain", "tokenization", "-t", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "'tokenization'" in out and "+" in out and "→" in out


@pytest.mark.parametrize("argv,message", [
    (["tokenizer", "show", "x", "-t", "/no/such/tokenizer"], "no such tokenizer"),
    (["tokenizer", "train", "--vocab-size", "100"], "byte alphabet"),
    (["tokenizer", "train", "/no/such/corpus.txt"], "no such file"),
    (["tokenizer", "train", "--pattern", "(unclosed"], "--pattern"),
])
def test_bad_input_prints_one_message_and_exits_nonzero(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lmforge", *argv, ] if argv[1] != "train" else
                          [sys.executable, "-m", "lmforge", *argv, "--out", str(tmp_path / "t")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_malformed_tokenizer_file_via_cli(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{broken")
    proc = subprocess.run([sys.executable, "-m", "lmforge", "tokenizer", "encode", "x", "-t", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_show_colours_spans_on_a_terminal(trained, capsys, monkeypatch):
    import sys as _sys

    monkeypatch.setattr(_sys.stdout, "isatty", lambda: True, raising=False)
    assert main(["tokenizer", "show", "naïve 😀 tokens", "-t", str(trained)]) == 0
    import re

    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.count("\x1b[48;5;") >= 3  # one background colour per token span
    assert re.sub(r"\x1b\[[0-9;]*m", "", first_line) == "naïve 😀 tokens"  # the spans tile the text
