"""torchrun with 2 processes (gloo on CPU): DDP and FSDP2 give the single-process losses for the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")
# Two processes sum the same per-example gradients in another order: float32 rounding, amplified a little by
# Adam over a few steps. Observed differences are <= 5e-7 (DDP and FSDP2). A wrong global batch (both ranks
# on the same examples, or no gradient all-reduce) trains on other data, which no rounding tolerance hides.
TOLERANCE = 1e-5
# Final weights of 2 processes vs 1: measured max |difference| 3.1e-6 (DDP, FSDP2), 5.5e-6 (DDP + accumulation);
# the step-3 checkpoint of the same run differs from step 6 by 4.9e-3, so a stale checkpoint cannot pass.
WEIGHT_TOLERANCE = 5e-5


def run(args: list[str], out: Path, torchrun: bool) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("WORLD_SIZE", None)
    prefix = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
              if torchrun else [sys.executable])
    proc = subprocess.run([*prefix, str(WORKER), str(out), *args], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> list[dict]:
    return run([], tmp_path_factory.mktemp("single"), torchrun=False)


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")
@pytest.mark.parametrize("mode", ["ddp", "fsdp", "ddp-accum"])
def test_two_processes_match_one(tmp_path, single_process, mode):
    args = {"ddp": [], "fsdp": ["--fsdp"], "ddp-accum": ["--grad-accum", "2"]}[mode]
    rows = run(args, tmp_path, torchrun=True)
    assert [r["step"] for r in rows] == [r["step"] for r in single_process]
    for mine, ref in zip(rows, single_process, strict=True):
        assert mine["loss"] == pytest.approx(ref["loss"], abs=TOLERANCE), mine["step"]
        assert mine["tokens"] == ref["tokens"]  # the same global batch
        if "val_loss" in ref:
            assert mine["val_loss"] == pytest.approx(ref["val_loss"], abs=TOLERANCE)
    # The gathered checkpoint is the full, final model, loadable in one process, written by 2 processes.
    single_dir = next(tmp_path.parent.glob("single*"))
    assert json.loads((tmp_path / "checkpoints" / "step-6" / "meta.json").read_text())["world_size"] == 2
    assert json.loads((single_dir / "checkpoints" / "step-6" / "meta.json").read_text())["world_size"] == 1
    full = _weights(tmp_path / "checkpoints" / "step-6")
    ref = _weights(single_dir / "checkpoints" / "step-6")
    stale = _weights(single_dir / "checkpoints" / "step-3")
    assert full.keys() == ref.keys()
    gap = max(float((full[n] - ref[n]).abs().max()) for n in ref)
    stale_gap = max(float((stale[n] - ref[n]).abs().max()) for n in ref)
    assert gap < WEIGHT_TOLERANCE, gap
    assert stale_gap > 20 * WEIGHT_TOLERANCE, "an earlier checkpoint would pass: the tolerance is too loose"


def _weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")
def test_torchrun_lmforge_train_gpt_matches_one_process(tmp_path):
    """The README's command, `torchrun --nproc_per_node 2 -m lmforge train gpt`, end to end: token folder, CLI,
    DDP, checkpoints — the same per-step losses and final weights as one process with the same options."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("WORLD_SIZE", None)
    src = tmp_path / "text.txt"
    from lmforge.data.corpus import builtin_text

    src.write_text(builtin_text()[:60_000], encoding="utf-8")
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "lmforge", "data", "prepare", str(src), "--vocab-size", "300",
                    "--out", str(data)], env=env, check=True, capture_output=True, timeout=240)
    options = ["train", "gpt", "--data", str(data), "--preset", "tiny", "--n-layer", "1", "--n-embd", "32",
               "--n-head", "2", "--block-size", "32", "--steps", "4", "--batch-size", "8", "--eval-every", "2",
               "--checkpoint-every", "2", "--no-progress"]
    runs = {}
    for name, prefix in (("one", [sys.executable, "-m", "lmforge"]),
                         ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  "--nproc_per_node", "2", "-m", "lmforge"])):
        out = tmp_path / name
        proc = subprocess.run([*prefix, *options, "--out", str(out)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = out
    rows = {n: [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            for n, out in runs.items()}
    losses = {n: [r["loss"] for r in rs if "loss" in r] for n, rs in rows.items()}
    assert len(losses["one"]) == 4
    assert losses["two"] == pytest.approx(losses["one"], abs=TOLERANCE)
    metas = {n: json.loads((out / "checkpoints" / "step-4" / "meta.json").read_text()) for n, out in runs.items()}
    assert (metas["one"]["world_size"], metas["two"]["world_size"]) == (1, 2)
    one, two = _weights(runs["one"] / "checkpoints" / "step-4"), _weights(runs["two"] / "checkpoints" / "step-4")
    assert max(float((one[n] - two[n]).abs().max()) for n in one) < WEIGHT_TOLERANCE
