"""Loading and saving models: ``lm = lmforge.load(path)`` detects the format and calls ONE loader from a table.

Formats and who implements them (each loader: ``fn(path: pathlib.Path, **options) -> lmforge.io.bundle.LM``;
``options`` are those given to :func:`load`, e.g. ``dtype=torch.float32``; a loader ignores options it does not
know — accept ``**_``):

- lmforge model folder (has ``lmforge.json``; its ``arch`` picks the model class, see
  :data:`lmforge.io.lmforge_format.ARCHITECTURES`) → ``lmforge.io.lmforge_format.load_lmforge``;
- Hugging Face folder (``config.json``; ``model_type`` picks the row of :data:`HF_LOADERS`):
  gpt2 / llama / mistral / mixtral / qwen2 → ``lmforge.io.hf.load_hf``; bert → ``lmforge.io.hf_bert.load``;
  marian (MarianMT encoder–decoder) → ``lmforge.io.hf_marian.load``;
- a ``.gguf`` file → ``lmforge.io.gguf.load_gguf``.

Adding a format or an HF architecture is one line in the tables below.

Saving: :func:`save_model` (lmforge folder), :func:`save_hf` (HF folder ``transformers`` can load).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError, FormatError

# HF config.json model_type → "module:function"
HF_LOADERS: dict[str, str] = {
    "gpt2": "lmforge.io.hf:load_hf",
    "llama": "lmforge.io.hf:load_hf",
    "mistral": "lmforge.io.hf:load_hf",
    "mixtral": "lmforge.io.hf:load_hf",
    "qwen2": "lmforge.io.hf:load_hf",
    "bert": "lmforge.io.hf_bert:load",
    "marian": "lmforge.io.hf_marian:load",
}
LMFORGE_LOADER = "lmforge.io.lmforge_format:load_lmforge"
GGUF_LOADER = "lmforge.io.gguf:load_gguf"


def _call(target: str, path: Path, options: dict) -> Any:
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)(path, **options)


def detect_format(path: Path) -> str:
    """The loader target for ``path`` (see the module docstring), or a FormatError/ConfigError saying why none."""
    if not path.exists():
        raise FormatError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return GGUF_LOADER
        raise FormatError(f"{path}: not a model (expected a .gguf file or a model folder)")
    if (path / "lmforge.json").exists():
        return LMFORGE_LOADER
    config_path = path / "config.json"
    if not config_path.exists() and (path / "modules.json").exists():
        # A sentence-transformers folder may keep its transformer in a sub-folder (e.g. 0_Transformer/).
        from lmforge.io.hf_bert import transformer_folder

        config_path = transformer_folder(path) / "config.json"
    if config_path.exists():
        try:
            model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise FormatError(f"{config_path}: not a valid JSON object ({e})") from None
        if model_type not in HF_LOADERS:
            raise ConfigError(
                f"{config_path}: model_type {model_type!r} is not supported (supported: {', '.join(HF_LOADERS)})"
            )
        return HF_LOADERS[model_type]
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return GGUF_LOADER
    raise FormatError(f"{path}: not a model folder (expected lmforge.json, config.json or one .gguf file)")


def load(path: str | os.PathLike, **options: Any) -> Any:
    """Open an lmforge model folder, a Hugging Face model folder or a ``.gguf`` file → :class:`~lmforge.io.bundle.LM`.

    >>> lm = lmforge.load("path/to/model")                   # doctest: +SKIP
    >>> lm.generate("The capital of France is", max_new_tokens=5)  # doctest: +SKIP
    """
    path = Path(path)
    target = detect_format(path)
    if target == GGUF_LOADER and path.is_dir():
        path = sorted(path.glob("*.gguf"))[0]
    return _call(target, path, options)


def save_model(folder: str | os.PathLike, model: Any, tokenizer: Any = None, generation_config: dict | None = None):
    """Write an lmforge model folder (see :mod:`lmforge.io.lmforge_format`)."""
    from lmforge.io.lmforge_format import save_model as _save

    return _save(folder, model, tokenizer, generation_config)


def save_hf(folder: str | os.PathLike, model: Any, tokenizer: Any = None, generation_config: dict | None = None):
    """Write a GPT model as a Hugging Face folder (see :mod:`lmforge.io.hf`)."""
    from lmforge.io.hf import save_hf as _save

    return _save(folder, model, tokenizer, generation_config)


__all__ = ["GGUF_LOADER", "HF_LOADERS", "LMFORGE_LOADER", "detect_format", "load", "save_hf", "save_model"]
