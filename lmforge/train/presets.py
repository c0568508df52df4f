"""The one table of named presets: a model family, a model shape and the optimisation settings that suit it.

Names never collide across families (``tiny`` is a GPT, ``bert-tiny`` a BERT). Every field can be overridden
(``lmforge train gpt --preset tiny --n-layer 2 --lr 3e-3``); a run folder stores the resolved configs in full
(``lmforge.json`` / ``config.json`` and ``train_config.json``), so it never depends on what a preset name meant when
it was trained. ``vocab_size`` left out of a preset comes from the tokenizer at training time (512 in
:func:`model_config` when not given, for quick experiments and tests).

| name | family | shape |
|---|---|---|
| ``tiny`` | gpt | 4 layers x 128, context 128 (GPT-2 switches) |
| ``tiny-llama`` | gpt | the tiny shape with Llama's switches and 2 key/value heads |
| ``gpt2-small`` | gpt | GPT-2 small: 12 x 768, context 1024 |
| ``gpt2-medium`` | gpt | GPT-2 medium: 24 x 1024 |
| ``llama-small`` | gpt | Llama switches at GPT-2 small's size, 4 key/value heads |
| ``smollm2-135m`` | gpt | SmolLM2-135M's shape |
| ``bert-tiny`` / ``bert-mini`` / ``bert-base`` | bert | 2 x 128 / 4 x 256 / 12 x 768 |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import ConfigError
from lmforge.train.loop import TrainConfig


@dataclass
class Preset:
    """A model family (``"gpt"`` | ``"bert"``), a model shape (its config's fields) and a :class:`TrainConfig`."""

    family: str
    description: str
    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


_LLAMA = {"norm": "rms", "mlp": "swiglu", "pos": "rope", "bias": False, "tie_embeddings": False}
_CPU = TrainConfig(steps=600, batch_size=16, lr=2e-3, warmup_steps=40, weight_decay=0.1, eval_every=100,
                   eval_batches=8, checkpoint_every=100, log_every=20)
_GPU = TrainConfig(steps=50_000, batch_size=64, grad_accum=8, lr=6e-4, warmup_steps=2000, weight_decay=0.1,
                   eval_every=1000, eval_batches=20, checkpoint_every=1000, log_every=10)
# masked-LM pre-training (lmforge train bert): BERT's Adam betas (0.9, 0.999)
_MLM = TrainConfig(steps=1000, batch_size=32, lr=5e-4, warmup_steps=100, weight_decay=0.01, beta2=0.999)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "gpt", "4 layers x 128 wide, context 128: trains in a few minutes on 2 CPU cores (lmforge demo)",
        {"block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0}, _CPU,
    ),
    "tiny-llama": Preset(
        "gpt", "the tiny shape with Llama's switches: RMSNorm, SwiGLU, rotary positions, grouped-query attention",
        {"block_size": 128, "n_layer": 4, "n_head": 4, "n_kv_head": 2, "n_embd": 128, "dropout": 0.0, **_LLAMA},
        _CPU,
    ),
    "gpt2-small": Preset(
        "gpt", "GPT-2 small's shape (124M with the GPT-2 vocab): 12 layers x 768, context 1024; GPU-sized",
        {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768, "dropout": 0.0}, _GPU,
    ),
    "gpt2-medium": Preset(
        "gpt", "GPT-2 medium's shape (355M with the GPT-2 vocab): 24 layers x 1024, context 1024; GPU-sized",
        {"block_size": 1024, "n_layer": 24, "n_head": 16, "n_embd": 1024, "dropout": 0.0}, _GPU,
    ),
    "llama-small": Preset(
        "gpt", "a Llama-style model of GPT-2 small's size: RMSNorm, SwiGLU, RoPE, 12 heads sharing 4 key/value heads",
        {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_kv_head": 4, "n_embd": 768, "dropout": 0.0, **_LLAMA},
        _GPU,
    ),
    "smollm2-135m": Preset(
        "gpt", "SmolLM2-135M's shape: 30 layers x 576, 9 heads sharing 3 key/value heads, context 8192",
        {"vocab_size": 49152, "block_size": 8192, "n_layer": 30, "n_head": 9, "n_kv_head": 3, "n_embd": 576,
         "ffn_hidden": 1536, "norm_eps": 1e-5, "rope_theta": 100000.0, **_LLAMA, "tie_embeddings": True},
        _GPU,
    ),
    "bert-tiny": Preset("bert", "2 layers x 128: masked-LM pre-training in minutes on a laptop",
                        {"n_embd": 128, "n_layer": 2, "n_head": 2, "ffn_hidden": 512}, _MLM),
    "bert-mini": Preset("bert", "4 layers x 256", {"n_embd": 256, "n_layer": 4, "n_head": 4, "ffn_hidden": 1024},
                        _MLM),
    "bert-base": Preset("bert", "BERT-base: 12 layers x 768, context 512", {}, _MLM),
}


def preset(name: str, family: str | None = None) -> Preset:
    """The named preset; a ConfigError lists the names (of ``family`` when given) for an unknown one.

    >>> preset("tiny").family, preset("bert-tiny").model["n_layer"]
    ('gpt', 2)
    """
    names = [n for n, p in PRESETS.items() if family is None or p.family == family]
    if name not in names:
        kind = f"{family} " if family else ""
        raise ConfigError(f"--preset: unknown {kind}preset {name!r}; choose one of {', '.join(names)}")
    return PRESETS[name]


def model_config(name: str, **overrides: Any) -> Any:
    """The preset's model config object (``GPTConfig`` / ``BertConfig``) with ``overrides``; ``vocab_size``
    defaults to 512 when neither gives it.

    >>> model_config("tiny-llama", n_layer=2).n_kv_head, model_config("bert-tiny").n_embd
    (2, 128)
    """
    p = preset(name)
    if p.family == "bert":
        from lmforge.models.bert import BertConfig as config_cls
    else:
        from lmforge.models.gpt import GPTConfig as config_cls
    fields = {"vocab_size": 512, **p.model, **overrides} if p.family == "gpt" else {**p.model, **overrides}
    return config_cls.from_dict(fields, source=f"preset {name!r}")


def resolve_preset(name: str, model_overrides: dict | None = None,
                   train_overrides: dict | None = None, family: str = "gpt") -> tuple[dict, TrainConfig]:
    """The preset's model fields and TrainConfig with overrides applied (``None`` values are ignored).

    >>> m, t = resolve_preset("tiny", {"n_layer": 2}, {"lr": 3e-3}); m["n_layer"], t.lr, t.steps
    (2, 0.003, 600)
    """
    chosen = preset(name, family)
    model = {**chosen.model, **{k: v for k, v in (model_overrides or {}).items() if v is not None}}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {k: v for k, v in (train_overrides or {}).items() if v is not None}
    unknown = sorted(set(changes) - train_fields)
    if unknown:
        raise ConfigError(f"unknown training option(s) {unknown}")
    if "lr" in changes and "min_lr" not in changes:
        changes["min_lr"] = None  # re-derive lr / 10 from the new lr
    return model, dataclasses.replace(chosen.train, **changes)
