"""The generic loop on small modules: learning, accumulation, bf16, checkpoints that survive failures, resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lmforge.errors import ConfigError, FormatError
from lmforge.train import checkpoint as ckpt
from lmforge.train.loop import TrainConfig, split_batch, train


class Regression:
    """y = x @ W_true + noise-free; a task whose loss can reach ~0."""

    def __init__(self, seed: int = 0) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.w_true = torch.randn(8, 3, generator=torch.Generator().manual_seed(123))

    def next_batch(self, n: int):
        x = torch.randn(n, 8, generator=self.gen)
        return x, x @ self.w_true

    def eval_batches(self, n: int):
        x = torch.randn(2 * n, 8, generator=torch.Generator().manual_seed(7))
        return [(x[:n], x[:n] @ self.w_true), (x[n:], x[n:] @ self.w_true)]

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x).float(), y)

    def state_dict(self) -> dict:
        return {"rng": self.gen.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(torch.tensor(state["rng"], dtype=torch.uint8))


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 3))  # linear: the target is reachable exactly


def config(**kw) -> TrainConfig:
    base = dict(steps=60, batch_size=8, lr=2e-2, warmup_steps=5, weight_decay=0.0, eval_every=20,
                checkpoint_every=20, log_every=10, grad_clip=1.0)
    base.update(kw)
    return TrainConfig(**base)


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_and_run_folder_is_complete(tmp_path):
    result = train(make_model(), Regression(), config(), tmp_path, progress=False)
    assert result.step == 60 and len(result.losses) == 60
    assert result.losses[-1] < 0.05 * result.losses[0]
    assert result.val_loss is not None and result.val_loss < 0.05 * result.losses[0]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert [r["step"] for r in rows if "val_loss" in r] == [20, 40, 60]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [40, 60]  # keep_checkpoints=2


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    one = train(make_model(), Regression(), config(steps=15, eval_every=0), tmp_path / "a", progress=False)
    acc = train(make_model(), Regression(), config(steps=15, eval_every=0, grad_accum=4), tmp_path / "b",
                progress=False)
    assert acc.losses == pytest.approx(one.losses, rel=1e-5, abs=1e-7)


def test_bf16_autocast_trains(tmp_path):
    result = train(make_model(), Regression(), config(bf16=True), tmp_path, progress=False)
    assert result.losses[-1] < 0.1 * result.losses[0]


def test_resume_continues_exactly(tmp_path):
    full = train(make_model(), Regression(), config(), tmp_path / "full", progress=False)
    part = tmp_path / "part"
    train(make_model(), Regression(), config(), part, progress=False, stop_after=25)  # checkpoint at 20, stop at 25
    assert [s for s, _ in ckpt.list_checkpoints(part / "checkpoints")] == [20, 25]
    resumed = train(make_model(), Regression(), config(), part, resume=True, progress=False)
    assert resumed.losses == pytest.approx(full.losses[25:], abs=1e-7)
    assert losses(part) == pytest.approx(losses(tmp_path / "full"), abs=1e-7)


def test_failing_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    train(make_model(), Regression(), config(steps=20), tmp_path, progress=False)
    good = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    assert good.name == "step-20"
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    real_save = torch.save
    calls = []

    def dies_on_trainer_state(obj, path, *a, **kw):
        calls.append(path)
        if str(path).endswith("trainer.pt"):
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise OSError("disk full (simulated)")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(torch, "save", dies_on_trainer_state)
    with pytest.raises(OSError, match="simulated"):
        train(make_model(), Regression(), config(steps=40), tmp_path, resume=True, progress=False)
    monkeypatch.undo()
    assert calls, "the failing save was never reached"
    # Still the same complete checkpoint, no temp folder left behind, and it loads.
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints") == good
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-20"]
    model = make_model()
    state = ckpt.load_checkpoint(good, model)
    assert state["step"] == 20


def test_keyboard_interrupt_saves_a_checkpoint(tmp_path):
    class Interrupting(Regression):
        def next_batch(self, n):
            if self.calls == 7:
                raise KeyboardInterrupt
            self.calls += 1
            return super().next_batch(n)

    task = Interrupting()
    task.calls = 0
    result = train(make_model(), task, config(checkpoint_every=0), tmp_path, progress=False)
    assert result.interrupted and result.step == 7
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step-7"


def test_checkpoint_from_another_config_is_refused(tmp_path):
    train(make_model(), Regression(), config(steps=5), tmp_path, model_config={"width": 32}, progress=False)
    with pytest.raises(ConfigError, match="width: checkpoint 32, this run 64"):
        train(make_model(), Regression(), config(steps=10), tmp_path, model_config={"width": 64}, resume=True,
              progress=False)
    wider = nn.Sequential(nn.Linear(8, 64), nn.Linear(64, 3))
    with pytest.raises(FormatError, match="does not fit"):
        ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "checkpoints"), wider)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="grad_accum"):
        TrainConfig(batch_size=6, grad_accum=4)
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0)


def test_split_batch_slices_every_tensor():
    batch = {"x": torch.arange(6).view(3, 2), "pair": (torch.arange(3), torch.arange(3) * 2)}
    part = split_batch(batch, 1, 3)
    assert part["x"].tolist() == [[2, 3], [4, 5]] and part["pair"][1].tolist() == [2, 4]


def test_a_fresh_run_never_mixes_into_an_old_runs_checkpoints(tmp_path):
    train(make_model(), Regression(), config(steps=5), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="already holds a run .step-5.; resume it"):
        train(make_model(), Regression(), config(steps=3), tmp_path, progress=False)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [5]
