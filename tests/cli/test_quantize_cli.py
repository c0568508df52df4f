"""``lmforge quantize`` and ``lmforge export --gguf``: what they write equals the library's answer, the printed
figures are the written model's, and mistakes are one message + exit code 1."""

from __future__ import annotations

import re

import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.io.quantize import quantize_model
from lmforge.nn.quantized import quantized_nbytes
from tests.test_generate import make_tiny_text_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_text_model(tmp_path_factory.mktemp("cli"))


def test_quantize_writes_the_library_model_and_prints_its_size(model_dir, tmp_path, capsys):
    out = tmp_path / "int4"
    assert main(["quantize", "--model", str(model_dir), "--to", "int4", "--group", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    back = lmforge.load(out)
    reference = lmforge.load(model_dir).model
    quantize_model(reference, "int4", 32)
    ids = torch.randint(0, 400, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(back.model(ids), reference(ids))
    layers = re.search(r": (\d+) int4/g32, (\d+) int8 layers; tensors ([\d.]+) MB", printed)
    assert layers and int(layers[1]) == 2 * 4 and int(layers[2]) == 2  # 4 matrices per block; embedding + tied head
    assert float(layers[3]) == round(quantized_nbytes(back.model) / 1e6, 1)


def test_quantize_to_gguf_and_export_print_the_file_size(model_dir, tmp_path, capsys):
    out = tmp_path / "m.gguf"
    assert main(["quantize", "--model", str(model_dir), "--to", "q8_0", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}: q8_0 ({out.stat().st_size / 1e6:.1f} MB)\n"
    again = tmp_path / "again.gguf"
    assert main(["export", "--model", str(out), "--gguf", str(again), "--type", "q8_0"]) == 0
    assert capsys.readouterr().out == f"wrote {again}: q8_0 ({again.stat().st_size / 1e6:.1f} MB)\n"
    assert again.read_bytes() == out.read_bytes()  # load (kept quantized) → export: the same file


@pytest.mark.parametrize("args,message", [
    (["--to", "int4", "--group", "128"], "blocks.0.attn.qkv: quantization int4: a row of 32 weights is not a whole "
                                         "number of groups of 128"),
    (["--to", "int8", "--group", "64"], "--group: only int4"),
    (["--to", "int4"], "a GGUF file holds q8_0 or q4_0"),
])
def test_mistakes_are_one_line(model_dir, tmp_path, capsys, args, message):
    out = tmp_path / ("x.gguf" if args == ["--to", "int4"] else "x")
    assert main(["quantize", "--model", str(model_dir), *args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()
