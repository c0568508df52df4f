"""Model folders are saved as a whole: a save killed at any rename leaves the old or the new model, loadable with its
own logits; saving into a run folder keeps the run's files and drops stale model files."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.io import save_hf, save_model
from lmforge.models.bert import Bert, BertConfig
from lmforge.models.gpt import GPT, GPTConfig


def _gpt(seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16, init_std=0.3)).eval()


def _bert(seed: int) -> Bert:
    torch.manual_seed(seed)
    return Bert(BertConfig(vocab_size=40, n_embd=16, n_layer=1, n_head=2, ffn_hidden=32, block_size=16)).eval()


IDS = torch.tensor([[1, 5, 9, 2, 7, 3]])
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", *(f"##{c}" for c in "aeiost")]
SAVERS = {  # the tokenizer adds renames of its own inside the new folder
    "save_model_gpt": (_gpt, save_model),
    "save_hf_gpt": (_gpt, save_hf),
    "save_hf_bert": (_bert, save_hf),
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from lmforge.tokenizers import load_tokenizer

    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return load_tokenizer(path)


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        out = model(IDS)
    return (out[0] if isinstance(out, tuple) else out).float()


def _killed_save(folder: Path, saver, model, kill_at: int) -> bool:
    """Run ``saver`` in a forked child that SIGKILLs itself at its ``kill_at``-th rename (``os.replace``) or at
    the deletion of the old folder; True if the child was killed, False if the save finished first."""
    import shutil

    pid = os.fork()
    if pid == 0:  # child: count renames; die on the chosen one, before it happens
        calls = [0]
        real_replace, real_rmtree = os.replace, shutil.rmtree

        def die_at_count():
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def replace(*a, **k):
            die_at_count()
            return real_replace(*a, **k)

        def rmtree(*a, **k):
            die_at_count()
            return real_rmtree(*a, **k)

        os.replace, shutil.rmtree = replace, rmtree
        try:
            saver(folder, model)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("name", list(SAVERS))
def test_a_save_killed_at_every_rename_leaves_the_old_or_the_new_model(tmp_path, name, tokenizer):
    build, save = SAVERS[name]

    def saver(folder, model):
        save(folder, model, tokenizer)

    old, new = build(0), build(1)
    old_logits, new_logits = _logits(old), _logits(new)
    assert (old_logits - new_logits).abs().max() > 0.1  # the two models are told apart by their logits
    seen = []
    for kill_at in range(1, 30):
        folder = tmp_path / f"k{kill_at}" / "model"
        saver(folder, old)
        killed = _killed_save(folder, saver, new, kill_at)
        lm = lmforge.load(folder)  # load recovers a folder left aside
        assert lm.tokenizer.get_vocab() == tokenizer.get_vocab()
        got = _logits(lm.model)
        if torch.allclose(got, old_logits, atol=1e-6):
            seen.append("old")
        else:
            assert torch.allclose(got, new_logits, atol=1e-6), f"kill at rename {kill_at}: neither model"
            seen.append("new")
        assert not (folder.parent / ".model.old").exists()  # load put the old folder back or deleted it
        saver(folder, new)  # the next save removes the temp folder/files the killed one left
        assert [p.name for p in folder.parent.iterdir()] == ["model"]
        assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
        if not killed:
            break
    else:
        pytest.fail("the save never finished")
    # Killed before the swap: the old model; after the swap (the old folder being deleted) or not killed: the new.
    assert seen[0] == "old" and seen[-1] == "new" and seen == sorted(seen, key=["old", "new"].index), seen
    assert len(seen) >= 3  # at least the two folder renames and the deletion were interrupted


def test_saving_into_a_run_folder_keeps_the_run_and_drops_stale_model_files(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-10").mkdir(parents=True)
    files = {"checkpoints/step-10/model.safetensors": b"ckpt", "metrics.jsonl": b'{"step": 1}\n',
             "loss.png": b"png", "train_config.json": b"{}", "README.md": b"# run"}
    for rel, data in files.items():
        (run / rel).write_bytes(data)
    stale = ["model-00001-of-00002.safetensors", "model.safetensors.index.json", "lmforge.json", "vocab.txt"]
    for rel in stale:
        (run / rel).write_bytes(b"stale")
    model = _gpt(3)
    save_hf(run, model)
    for rel, data in files.items():
        assert (run / rel).read_bytes() == data, rel
    assert not any((run / rel).exists() for rel in stale)
    assert torch.allclose(_logits(lmforge.load(run).model), _logits(model), atol=1e-6)
    save_model(run, model)  # the other format replaces the HF files too
    assert not (run / "config.json").exists() and (run / "lmforge.json").exists()
    assert (run / "checkpoints/step-10/model.safetensors").read_bytes() == b"ckpt"
    assert oct((run).stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
