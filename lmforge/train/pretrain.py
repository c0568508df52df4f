"""Pre-train a GPT on a token folder: what ``lmforge train gpt`` and ``lmforge demo`` call.

    from lmforge.train.pretrain import pretrain_gpt
    result = pretrain_gpt("data/builtin", "runs/tiny", preset="tiny", train_overrides={"steps": 200})
    lm = lmforge.load("runs/tiny")          # the run folder is always a loadable model folder

The run folder gets ``lmforge.json`` + ``model.safetensors`` + ``tokenizer.json`` (the latest model),
``checkpoints/step-N/``, ``metrics.jsonl``, ``loss.png`` and ``train_config.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from lmforge.data.tokens import TokenData, open_tokens, tokenizer_fingerprint
from lmforge.errors import ConfigError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.lm import NextTokenTask
from lmforge.train.loop import TrainConfig, TrainResult, train
from lmforge.train.presets import resolve_preset


def build_gpt_config(data: TokenData, model_fields: dict) -> GPTConfig:
    """A GPTConfig for this data: the vocab comes from the data's tokenizer unless given (then it must fit)."""
    fields = dict(model_fields)
    fields.setdefault("vocab_size", data.vocab_size)
    if fields["vocab_size"] < data.vocab_size:
        raise ConfigError(f"--vocab-size {fields['vocab_size']} is smaller than the vocabulary of the tokens in "
                          f"{data.folder} ({data.vocab_size})")
    return GPTConfig.from_dict(fields, source="model config")


def _load_run_tokenizer(data: TokenData, tokenizer_path: str | os.PathLike | None) -> Any:
    from lmforge.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path or data.tokenizer_path)
    data.check_tokenizer(tokenizer, source=str(tokenizer_path or data.tokenizer_path))
    return tokenizer


def gpt_exporter(config: GPTConfig, tokenizer: Any):
    """``export(state_dict, folder)`` writing an lmforge model folder (the loop calls it at every checkpoint)."""
    from lmforge.io.lmforge_format import save_model

    def export(state: dict[str, torch.Tensor], folder: Path) -> None:
        model = GPT(config)
        model.load_state_dict(state)
        save_model(folder, model, tokenizer)

    return export


def pretrain_gpt(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    preset: str = "tiny",
    model_overrides: dict | None = None,
    train_overrides: dict | None = None,
    *,
    tokenizer_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a GPT of ``preset`` shape (with overrides) on the tokens in ``data_dir``; the run goes to ``out_dir``.

    ``tokenizer_path``: the tokenizer the data must have been made with (default: the data folder's own).
    """
    model_fields, train_config = resolve_preset(preset, model_overrides, train_overrides)
    data = open_tokens(data_dir)
    tokenizer = _load_run_tokenizer(data, tokenizer_path)
    out = Path(out_dir)
    if resume and (out / "tokenizer.json").exists():
        from lmforge.tokenizers import load_tokenizer

        run_tokenizer = load_tokenizer(out / "tokenizer.json")
        if tokenizer_fingerprint(run_tokenizer) != tokenizer_fingerprint(tokenizer):
            raise ConfigError(f"{data.folder}: tokens were made with another tokenizer than the run in {out} "
                              f"(its tokenizer.json); resume with the data it was trained on")
    config = build_gpt_config(data, model_fields)
    return train_gpt(config, data, out, train_config, tokenizer, resume=resume, progress=progress,
                     stop_after=stop_after)


def train_gpt(config: GPTConfig, data: TokenData, out_dir: str | os.PathLike, train_config: TrainConfig,
              tokenizer: Any, *, resume: bool = False, progress: bool = True,
              stop_after: int | None = None) -> TrainResult:
    """The loop on a fresh GPT(config) with the next-token task over ``data``."""
    torch.manual_seed(train_config.seed)  # the same initial weights on every process and every run
    model = GPT(config)
    task = NextTokenTask(data, config.block_size, seed=train_config.seed,
                         max_eval_windows=train_config.eval_batches * train_config.batch_size)
    return train(model, task, train_config, out_dir, resume=resume, model_config=config.to_dict(),
                 export=gpt_exporter(config, tokenizer), progress=progress, stop_after=stop_after)
