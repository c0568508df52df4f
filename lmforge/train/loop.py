"""The training loop every lmforge model trains with: GPT pre-training, BERT masked-LM, fine-tuning.

The loop knows nothing about language models. What it trains on is a **task**: any object with

``next_batch(batch_size) -> batch``
    The next *global* batch of ``batch_size`` examples for one optimizer step. A batch is a tensor, or a
    tuple / list / dict of tensors, whose dim 0 indexes examples, e.g. ``(x, y)`` with ``x: (B, T)``. Every
    process calls it with the same seed and state, so every process sees the same global batch; the loop
    slices out this process's share and its gradient-accumulation micro-batches (dim 0), which is what keeps
    the global batch, and the losses, the same for 1 process or N.
``eval_batches(batch_size) -> list[batch]``
    A fixed, deterministic list of validation batches (may be empty: no evaluation).
``loss(model, batch) -> Tensor``
    The scalar mean loss of ``model`` on one micro-batch. ``model`` may be wrapped (DDP, FSDP, compiled):
    call it like the model; use :func:`unwrap_model` to reach attributes such as an MoE auxiliary loss.
``state_dict() -> dict`` / ``load_state_dict(state)``
    The sampler position and RNG state (plain Python values), saved in every checkpoint so ``resume``
    continues with exactly the batches an uninterrupted run would have seen.

Optional: ``tokens_in(batch) -> int`` (the tokens a batch holds, for tokens/s; default: ``numel`` of the
first tensor); ``reports_perplexity = False`` when the loss is not a per-token cross-entropy (e.g. a
classifier's), so that no ``exp(loss)`` is logged as a perplexity.

``train(model, task, config, run_dir)`` then does AdamW with decoupled weight decay (none on norms, biases
and embeddings), linear warm-up + cosine decay, gradient clipping and accumulation, optional bf16 autocast
and ``torch.compile``, evaluation every ``eval_every`` steps, a progress bar (plain log lines when stderr is
not a terminal), ``metrics.jsonl`` + ``loss.png``, and atomic checkpoints under ``run_dir/checkpoints/step-N/``
every ``checkpoint_every`` steps, at the end and on Ctrl-C. Under ``torchrun`` it trains with
DistributedDataParallel, or FSDP2 (``fully_shard``) when ``config.fsdp`` is set.

A minimal task (learn ``y = 2x``)::

    class Doubling:
        def __init__(self):
            self.gen = torch.Generator().manual_seed(0)
        def next_batch(self, n):
            x = torch.randn(n, 1, generator=self.gen)
            return x, 2 * x
        def eval_batches(self, n):
            return []
        def loss(self, model, batch):
            x, y = batch
            return torch.nn.functional.mse_loss(model(x), y)
        def state_dict(self):
            return {"rng": self.gen.get_state().tolist()}
        def load_state_dict(self, s):
            self.gen.set_state(torch.tensor(s["rng"], dtype=torch.uint8))

    result = train(torch.nn.Linear(1, 1), Doubling(), TrainConfig(steps=200, lr=0.1), "runs/double")
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from lmforge.errors import ConfigError
from lmforge.fileio import atomic_write_text
from lmforge.train import checkpoint as ckpt
from lmforge.train.distributed import DistContext, init_distributed, wrap_model
from lmforge.train.optim import build_adamw, lr_at


class Task(Protocol):
    """What the loop trains on; see the module docstring."""

    def next_batch(self, batch_size: int) -> Any: ...

    def eval_batches(self, batch_size: int) -> list[Any]: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainConfig:
    """Optimisation hyper-parameters of one run (the model's own shape lives in its config).

    ``batch_size`` is the *global* batch in examples per optimizer step: each of ``world`` processes runs
    ``grad_accum`` micro-batches of ``batch_size // (world * grad_accum)`` examples.
    """

    steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float | None = None  # end of the cosine; default lr / 10
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 = no clipping
    eval_every: int = 100  # 0 = only at the end
    eval_batches: int = 8
    checkpoint_every: int = 200  # 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 10
    bf16: bool = False
    compile: bool = False
    fsdp: bool = False
    seed: int = 1337

    def __post_init__(self) -> None:
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        for name in ("steps", "batch_size", "grad_accum", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "eval_batches", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train config: {name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"train config: lr must be > 0, got {self.lr}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"train config: batch_size {self.batch_size} must be a multiple of grad_accum {self.grad_accum}"
            )


@dataclass
class TrainResult:
    """What a finished (or interrupted) run leaves: its last step and the per-step history."""

    run_dir: Path
    step: int
    losses: list[float] = field(default_factory=list)  # training loss of every step run in this call
    val_loss: float | None = None
    interrupted: bool = False
    checkpoint: Path | None = None
    resumed_from: int | None = None  # the checkpoint step this call continued from


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module under DDP / ``torch.compile`` wrappers (FSDP2 shards in place, nothing to unwrap).

    >>> unwrap_model(torch.compile(torch.nn.Linear(1, 1))).__class__.__name__  # doctest: +SKIP
    'Linear'
    """
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def split_batch(batch: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` (dim 0) of every tensor in a batch.

    >>> split_batch((torch.arange(4), {"m": torch.arange(4)}), 1, 3)
    (tensor([1, 2]), {'m': tensor([1, 2])})
    """
    if isinstance(batch, torch.Tensor):
        return batch[start:stop]
    if isinstance(batch, dict):
        return {k: split_batch(v, start, stop) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(split_batch(v, start, stop) for v in batch)
    return batch


def batch_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: batch_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(batch_to(v, device) for v in batch)
    return batch


def _first_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    values = batch.values() if isinstance(batch, dict) else batch
    return _first_tensor(next(iter(values)))


def _tokens_in(task: Task, batch: Any) -> int:
    count = getattr(task, "tokens_in", None)
    return int(count(batch)) if count else int(_first_tensor(batch).numel())


def _format_duration(seconds: float) -> str:
    """``_format_duration(3725) -> '1h02m05s'``."""
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class _Progress:
    """tqdm bar on a terminal, else a plain log line every ``log_every`` steps (rank 0 only)."""

    def __init__(self, total: int, initial: int, log_every: int, enabled: bool, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total, self.log_every = total, log_every
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", file=self.stream,
                            dynamic_ncols=True)
        self.started = time.perf_counter()
        self.first_step = initial

    def update(self, step: int, loss: float, tokens_per_s: float, lr: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f} | {tokens_per_s:,.0f} tok/s | lr {lr:.2e}", refresh=False)
            self.bar.update(1)
        elif step % self.log_every == 0 or step == self.total:
            done = step - self.first_step
            eta = (time.perf_counter() - self.started) / max(done, 1) * (self.total - step)
            print(f"step {step}/{self.total} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s | "
                  f"eta {_format_duration(eta)}", file=self.stream, flush=True)

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_metrics(path: Path, up_to_step: int) -> list[str]:
    """Lines of ``metrics.jsonl`` for steps <= ``up_to_step`` (a resumed run rewrites what came after)."""
    if not path.exists():
        return []
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            if json.loads(line).get("step", 0) <= up_to_step:
                keep.append(line)
    return keep


def plot_losses(metrics_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Draw training (and validation) loss against step from ``metrics.jsonl`` into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_path).read_text(encoding="utf-8").splitlines() if line]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, batch_size: int, max_batches: int, dist_ctx: DistContext,
             device: torch.device, bf16: bool = False) -> float | None:
    """Mean validation loss over the first ``max_batches`` of ``task.eval_batches(batch_size)``.

    Each process evaluates its share of the rows of every batch; the example-weighted mean is the same for
    any number of processes.
    """
    batches = task.eval_batches(batch_size)[:max_batches]
    if not batches:
        return None
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of loss x rows, rows)
    for batch in batches:
        rows = len(_first_tensor(batch))
        start, stop = rows * dist_ctx.rank // dist_ctx.world, rows * (dist_ctx.rank + 1) // dist_ctx.world
        if rows >= dist_ctx.world:  # every process must run the same forwards (FSDP gathers weights in them)
            mine = batch_to(split_batch(batch, start, stop), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                total[0] += task.loss(model, mine).double() * (stop - start)
            total[1] += stop - start
    dist_ctx.all_reduce_sum(total)
    model.train(was_training)
    return float(total[0] / total[1]) if total[1] else None


def train(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    model_config: dict | None = None,
    export: Callable[[dict[str, torch.Tensor], Path], None] | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``model`` on ``task`` for ``config.steps`` optimizer steps, writing everything under ``run_dir``.

    ``model_config``: a JSON-able description of the model saved in every checkpoint; ``resume`` refuses a
    checkpoint whose description differs. ``export(state_dict, run_dir)`` is called (rank 0) with the full
    model state at every checkpoint, to keep ``run_dir`` itself a loadable model folder.
    Ctrl-C saves a checkpoint and returns with ``interrupted=True``.
    ``resume=True`` continues from the newest complete checkpoint under ``run_dir/checkpoints`` (starting
    fresh when there is none). ``stop_after`` ends this call after that many steps (tests, time budgets).
    """
    run_dir = Path(run_dir)
    dist_ctx = init_distributed()
    dev = torch.device(device) if device is not None else dist_ctx.device
    per_step = dist_ctx.world * config.grad_accum
    if config.batch_size % per_step:
        raise ConfigError(
            f"train config: batch_size {config.batch_size} must be a multiple of processes x grad_accum "
            f"= {dist_ctx.world} x {config.grad_accum}"
        )
    micro = config.batch_size // per_step
    # Seed before wrapping: every process starts from rank 0's weights anyway (DDP/FSDP broadcast them);
    # dropout masks differ per process, as they would for different examples.
    torch.manual_seed(config.seed + dist_ctx.rank)
    random.seed(config.seed + dist_ctx.rank)
    np.random.seed((config.seed + dist_ctx.rank) % 2**32)

    model = model.to(dev)
    raw_model = model
    wrapped = wrap_model(model, dist_ctx, fsdp=config.fsdp)
    forward_model = torch.compile(wrapped) if config.compile else wrapped
    optimizer = build_adamw(raw_model, config.lr, config.weight_decay, (config.beta1, config.beta2), config.eps)

    start_step = 0
    checkpoints_dir = run_dir / "checkpoints"
    existing = ckpt.latest_checkpoint(checkpoints_dir)
    if existing is not None and not resume:
        # A fresh run mixed into an old one's checkpoints would be pruned against them and resumed from them.
        raise ConfigError(f"{run_dir}: already holds a run ({existing.name}); resume it (--resume) or train "
                          f"into another folder")
    if resume:
        latest = existing
        if latest is not None:
            state = ckpt.load_checkpoint(latest, raw_model, optimizer, expected_model_config=model_config,
                                         dist_ctx=dist_ctx)
            start_step = state["step"]
            task.load_state_dict(state["task"])
            rng = state["rng"]
            _set_rng_state(rng[dist_ctx.rank] if dist_ctx.rank < len(rng) else rng[0])
            if dist_ctx.is_main and progress:
                print(f"resuming from {latest} (step {start_step})", file=sys.stderr)

    metrics_path = run_dir / "metrics.jsonl"
    if dist_ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "train_config.json", json.dumps(asdict(config), indent=2) + "\n")
        kept = _read_metrics(metrics_path, start_step) if resume else []
        atomic_write_text(metrics_path, "".join(line + "\n" for line in kept))
    metrics_file = open(metrics_path, "a", encoding="utf-8") if dist_ctx.is_main else None

    def save(step: int, val_loss: float | None) -> Path | None:
        path = ckpt.save_checkpoint(
            checkpoints_dir, step, raw_model, optimizer,
            trainer_state={"step": step, "task": task.state_dict(), "rng": dist_ctx.gather_object(_rng_state())},
            meta={"step": step, "val_loss": val_loss, "train_config": asdict(config), "model_config": model_config,
                  "world_size": dist_ctx.world},
            dist_ctx=dist_ctx, keep=config.keep_checkpoints, export=export, export_dir=run_dir,
        )
        if dist_ctx.is_main and metrics_path.stat().st_size:
            plot_losses(metrics_path, run_dir / "loss.png")
        return path

    result = TrainResult(run_dir=run_dir, step=start_step, resumed_from=start_step if start_step else None)
    end_step = config.steps if stop_after is None else min(config.steps, start_step + stop_after)
    bar = _Progress(config.steps, start_step, config.log_every, progress and dist_ctx.is_main)
    params = [p for p in raw_model.parameters() if p.requires_grad]
    step = start_step
    last_saved = start_step if resume and start_step else -1
    val_loss = None
    model.train()
    try:
        while step < end_step:
            t0 = time.perf_counter()
            lr = lr_at(step, config.lr, config.min_lr, config.warmup_steps, config.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            global_batch = task.next_batch(config.batch_size)
            mine = split_batch(global_batch, dist_ctx.rank * micro * config.grad_accum,
                               (dist_ctx.rank + 1) * micro * config.grad_accum)
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            tokens = 0
            for k in range(config.grad_accum):
                batch = batch_to(split_batch(mine, k * micro, (k + 1) * micro), dev)
                tokens += _tokens_in(task, batch)
                last = k == config.grad_accum - 1
                with dist_ctx.grad_sync(wrapped, enabled=last):
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.bf16):
                        loss = task.loss(forward_model, batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}; "
                                                 f"try a lower --lr or --grad-clip")
                    (loss / config.grad_accum).backward()
                loss_sum += loss.detach().double()
            grad_norm = (torch.nn.utils.clip_grad_norm_(params, config.grad_clip) if config.grad_clip > 0
                         else None)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum /= config.grad_accum * dist_ctx.world
            dist_ctx.all_reduce_sum(loss_sum)
            step_loss = float(loss_sum)
            tokens *= dist_ctx.world
            elapsed = time.perf_counter() - t0
            result.losses.append(step_loss)
            row: dict[str, Any] = {"step": step, "loss": step_loss, "lr": lr, "tokens": tokens,
                                   "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1)}
            if grad_norm is not None:
                row["grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor")
                                         else grad_norm)
            if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
                val_loss = evaluate(forward_model, task, config.batch_size, config.eval_batches,
                                    dist_ctx, dev, config.bf16)
                if val_loss is not None:
                    row["val_loss"] = val_loss
                    if getattr(task, "reports_perplexity", True):
                        row["val_ppl"] = math.exp(min(val_loss, 700.0))
                        bar.write(f"step {step}: val loss {val_loss:.4f}, perplexity {row['val_ppl']:.2f}")
                    else:
                        bar.write(f"step {step}: val loss {val_loss:.4f}")
            if metrics_file is not None:
                metrics_file.write(json.dumps(row) + "\n")
                metrics_file.flush()
            bar.update(step, step_loss, row["tokens_per_s"], lr)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step != config.steps:
                result.checkpoint = save(step, val_loss)
                last_saved = step
    except KeyboardInterrupt:
        result.interrupted = True
        bar.write(f"interrupted: saving a checkpoint at step {step}")
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
    result.step, result.val_loss = step, val_loss
    if step != last_saved and step > 0:
        result.checkpoint = save(step, val_loss)
    dist_ctx.close()
    return result
