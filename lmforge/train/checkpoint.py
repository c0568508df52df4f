"""Checkpoints that lose nothing: ``checkpoints/step-N/`` written whole or not at all.

A checkpoint folder holds::

    model.safetensors   the full model state (gathered from every process under DDP/FSDP)
    optimizer.pt        AdamW moments and step counts, keyed by parameter name (torch.save, weights only)
    trainer.pt          step, the task's sampler position/RNG state, every process's RNG states
    meta.json           step, validation loss, train and model config (human-readable)

It is first written to a hidden ``.step-N.tmp-*`` folder beside the others, every file fsynced, then renamed
to ``step-N`` in one ``os.rename``: a crash or a failing write at any point leaves the previous checkpoints
exactly as they were, and a folder named ``step-N`` is always complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmforge.errors import ConfigError, FormatError
from lmforge.fileio import _fsync_dir
from lmforge.models.vocabulary import upgrade_config_dict
from lmforge.train.distributed import DistContext

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _options(**kw: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def list_checkpoints(checkpoints_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints as ``(step, path)``, oldest first (hidden temp folders are ignored)."""
    folder = Path(checkpoints_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / "meta.json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(checkpoints_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    found = list_checkpoints(checkpoints_dir)
    return found[-1][1] if found else None


def _to_plain(obj: Any) -> Any:
    """numpy arrays -> lists, so ``torch.load(weights_only=True)`` can read the state back."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def _from_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
        return {k: _from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_from_plain(v) for v in obj)
    return obj


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_checkpoint(
    checkpoints_dir: str | os.PathLike,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    meta: dict,
    dist_ctx: DistContext | None = None,
    keep: int = 2,
    export: Callable[[dict[str, torch.Tensor], Path], None] | None = None,
    export_dir: Path | None = None,
) -> Path:
    """Write ``checkpoints_dir/step-{step}/`` atomically (collective under DDP/FSDP: call on every process).

    Keeps the newest ``keep`` checkpoints; then calls ``export(model_state, export_dir)`` on rank 0.
    """
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    dist_ctx = dist_ctx or DistContext()
    folder = Path(checkpoints_dir)
    final = folder / f"step-{step}"
    # Gathering full states is collective: every process takes part, rank 0 receives the tensors.
    model_state = get_model_state_dict(model, options=_options(cpu_offload=True))
    optim_state = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if dist_ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step}.tmp-", dir=folder))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a checkpoint is as readable as its run folder
        try:
            # clone: tied weights share storage, which safetensors refuses to write twice.
            tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model_state.items()}
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt", "step": str(step)})
            torch.save(optim_state, tmp / "optimizer.pt")
            torch.save(_to_plain(trainer_state), tmp / "trainer.pt")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
            for f in tmp.iterdir():
                _fsync_file(f)
            _fsync_dir(tmp)
            if final.exists():  # re-saving a step (a resumed run that stopped at once): swap, never mix
                old = folder / f".step-{step}.old-{os.getpid()}"
                os.rename(final, old)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
            _fsync_dir(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for _, old_path in list_checkpoints(folder)[:-keep]:
            shutil.rmtree(old_path, ignore_errors=True)
        if export is not None:
            export(model_state, Path(export_dir) if export_dir else folder.parent)
    dist_ctx.barrier()
    return final


def _config_differences(saved: dict, current: dict) -> list[str]:
    """``_config_differences({"n_layer": 4}, {"n_layer": 2}) -> ['n_layer: checkpoint 4, this run 2']``."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            diffs.append(f"{key}: checkpoint {saved.get(key)!r}, this run {current.get(key)!r}")
    return diffs


def read_meta(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: not a readable lmforge checkpoint (meta.json: {e})") from None


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    expected_model_config: dict | None = None,
    dist_ctx: DistContext | None = None,
) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``); returns the trainer state (step, task, rng).

    Refuses, with a :class:`ConfigError` naming the fields, a checkpoint made for another model config.
    """
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    path = Path(path)
    meta = read_meta(path)
    saved_config = meta.get("model_config")
    if expected_model_config is not None and saved_config is not None:
        current = json.loads(json.dumps(expected_model_config))
        # checkpoints written before the one config vocabulary name BERT's fields the old way (d_model, ...)
        diffs = _config_differences(upgrade_config_dict(saved_config, set(current)), current)
        if diffs:
            raise ConfigError(f"{path}: checkpoint was made for another model config — " + "; ".join(diffs))
    try:
        state = load_file(str(path / "model.safetensors"))
        set_model_state_dict(model, state, options=_options())
        if optimizer is not None:
            optim_state = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
            set_optimizer_state_dict(model, optimizer, optim_state, options=_options())
        trainer = torch.load(path / "trainer.pt", weights_only=True, map_location="cpu")
    except (RuntimeError, KeyError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FormatError(f"{path}: checkpoint does not fit this model/optimizer ({first})") from None
    if dist_ctx is not None:
        dist_ctx.barrier()
    return _from_plain(trainer)
