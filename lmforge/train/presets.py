"""Named training presets: a model shape plus the optimisation settings that suit it.

Every field can be overridden (``lmforge train gpt --preset tiny --n-layer 2 --lr 3e-3``); the run folder
stores the resolved configs (``lmforge.json``, ``train_config.json``). ``vocab_size`` left out of a preset comes
from the token folder's tokenizer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lmforge.errors import ConfigError
from lmforge.train.loop import TrainConfig


@dataclass
class Preset:
    """A model shape (GPTConfig fields) and a :class:`TrainConfig`."""

    description: str
    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


_LLAMA = {"norm": "rms", "mlp": "swiglu", "pos": "rope", "bias": False, "tie_embeddings": False}

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "4 layers x 128 wide, context 128: trains in a few minutes on 2 CPU cores (lmforge demo)",
        {"block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0},
        TrainConfig(steps=600, batch_size=16, lr=2e-3, warmup_steps=40, weight_decay=0.1, eval_every=100,
                    eval_batches=8, checkpoint_every=100, log_every=20),
    ),
    "tiny-llama": Preset(
        "the tiny shape with Llama's switches: RMSNorm, SwiGLU, rotary positions, grouped-query attention",
        {"block_size": 128, "n_layer": 4, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "dropout": 0.0, **_LLAMA},
        TrainConfig(steps=600, batch_size=16, lr=2e-3, warmup_steps=40, weight_decay=0.1, eval_every=100,
                    eval_batches=8, checkpoint_every=100, log_every=20),
    ),
    "gpt2-small": Preset(
        "GPT-2 small's shape (124M with the GPT-2 vocab): 12 layers x 768, context 1024; GPU-sized",
        {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768, "dropout": 0.0},
        TrainConfig(steps=50_000, batch_size=64, grad_accum=8, lr=6e-4, warmup_steps=2000, weight_decay=0.1,
                    eval_every=1000, eval_batches=20, checkpoint_every=1000, log_every=10),
    ),
    "llama-small": Preset(
        "a Llama-style model of GPT-2 small's size: RMSNorm, SwiGLU, RoPE, 12 heads sharing 4 key/value heads",
        {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_kv_head": 4, "n_embd": 768, "dropout": 0.0,
         **_LLAMA},
        TrainConfig(steps=50_000, batch_size=64, grad_accum=8, lr=6e-4, warmup_steps=2000, weight_decay=0.1,
                    eval_every=1000, eval_batches=20, checkpoint_every=1000, log_every=10),
    ),
}


def resolve_preset(name: str, model_overrides: dict | None = None,
                   train_overrides: dict | None = None) -> tuple[dict, TrainConfig]:
    """The preset's model fields and TrainConfig with overrides applied (``None`` values are ignored).

    >>> m, t = resolve_preset("tiny", {"n_layer": 2}, {"lr": 3e-3}); m["n_layer"], t.lr, t.steps
    (2, 0.003, 600)
    """
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    model = {**preset.model, **{k: v for k, v in (model_overrides or {}).items() if v is not None}}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {k: v for k, v in (train_overrides or {}).items() if v is not None}
    unknown = sorted(set(changes) - train_fields)
    if unknown:
        raise ConfigError(f"unknown training option(s) {unknown}")
    if "lr" in changes and "min_lr" not in changes:
        changes["min_lr"] = None  # re-derive lr / 10 from the new lr
    return model, dataclasses.replace(preset.train, **changes)
