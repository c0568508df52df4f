"""``lmforge generate``: output equals the library's, --show-probs, and errors as one message + exit code 1."""

from __future__ import annotations

import json

import pytest

import lmforge
from lmforge.cli import main
from tests.test_generate import make_tiny_text_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_text_model(tmp_path_factory.mktemp("cli"))


def test_generate_prints_what_the_library_returns(model_dir, capsys):
    assert main(["generate", "--model", str(model_dir), "--prompt", "Lists are", "--max-new-tokens", "12"]) == 0
    expected = lmforge.load(model_dir).generate("Lists are", max_new_tokens=12)
    assert capsys.readouterr().out == expected + "\n"
    args = ["--temperature", "0.9", "--top-p", "0.9", "--seed", "3", "--max-new-tokens", "12"]
    assert main(["generate", "--model", str(model_dir), "--prompt", "Lists are", *args]) == 0
    expected = lmforge.load(model_dir).generate("Lists are", max_new_tokens=12, temperature=0.9, top_p=0.9, seed=3)
    assert capsys.readouterr().out == expected + "\n"


def test_show_probs_lists_each_token_with_alternatives(model_dir, capsys):
    assert main(["generate", "--model", str(model_dir), "--prompt", "Lists are", "--max-new-tokens", "4",
                 "--show-probs", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[1:5]
    assert len(table) == 4
    for line in table:
        prob = float(line[16:].split()[0])
        assert 0.0 < prob <= 1.0
    assert lines[-1].startswith("Lists are")


def test_errors_are_one_line_and_exit_1(model_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["generate", "--model", str(model_dir), "--prompt", "word " * 100]) == 1
    assert "context window" in capsys.readouterr().err
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "falcon"}))
    assert main(["generate", "--model", str(tmp_path / "hf"), "--prompt", "x"]) == 1
    err = capsys.readouterr().err
    assert "model_type 'falcon' is not supported" in err and "Traceback" not in err
    weights = tmp_path / "trunc"
    make_tiny_text_model(weights)
    (weights / "model.safetensors").write_bytes((weights / "model.safetensors").read_bytes()[:500])
    assert main(["generate", "--model", str(weights), "--prompt", "x"]) == 1
    assert "model.safetensors" in capsys.readouterr().err
