"""``lmforge data prepare``: unchanged input reuses the token files, ``--force`` rebuilds them; the printed counts
are the folder's."""

from __future__ import annotations

import numpy as np

from lmforge.cli import main
from lmforge.data.tokens import open_tokens
from lmforge.tokenizers import train_tokenizer


def test_prepare_reuses_unchanged_input_and_force_rebuilds(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"line {i}: the river ran past the mill and the miller sang" for i in range(200)),
                    encoding="utf-8")
    tok = train_tokenizer([text.read_text()], kind="bpe", vocab_size=300, special_tokens=["<|endoftext|>"],
                          show_progress=False)
    tok.save(tmp_path / "tok.json", format="hf")
    out = tmp_path / "data"
    cmd = ["data", "prepare", str(text), "--tokenizer", str(tmp_path / "tok.json"), "--out", str(out),
           "--workers", "1"]
    assert main(cmd) == 0
    data = open_tokens(out)
    printed = capsys.readouterr().out
    assert f"{len(data.train):,} training + {len(data.val):,} validation tokens" in printed
    assert np.array_equal(np.concatenate([data.train, data.val])[:5], tok.encode("line 0: the river")[:5])
    original = (out / "train.bin").read_bytes()
    # Damage the token file without touching the manifest: a plain re-run trusts the manifest and keeps the file...
    (out / "train.bin").write_bytes(bytes(len(original)))
    assert main(cmd) == 0
    assert (out / "train.bin").read_bytes() == bytes(len(original))
    assert capsys.readouterr().out == printed
    # ... --force tokenizes again and writes the same tokens as the first run.
    assert main([*cmd, "--force"]) == 0
    assert (out / "train.bin").read_bytes() == original
    assert capsys.readouterr().out == printed
