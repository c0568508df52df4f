"""Reading and writing model files: :func:`load_parts` detects the format and calls ONE loader from a table
(``lmforge.load`` — the user's entry point in :mod:`lmforge.lm` — wraps what it returns into an ``LM``).

Every loader is named ``load_<format>`` and is ``fn(path: pathlib.Path, **options) -> ModelParts``; ``options`` are
those given to ``lmforge.load``, e.g. ``dtype=torch.float32``; a loader ignores options it does not know (``**_``):

- lmforge model folder (has ``lmforge.json``; its ``arch`` picks the model class, see
  :data:`lmforge.io.lmforge_format.ARCHITECTURES`) → ``lmforge.io.lmforge_format.load_lmforge``;
- Hugging Face folder (``config.json``; ``model_type`` picks the row of :data:`HF_LOADERS`):
  gpt2 / llama / mistral / mixtral / qwen2 → ``lmforge.io.hf_gpt.load_hf_gpt``;
  bert → ``lmforge.io.hf_bert.load_hf_bert`` (also sentence-transformers folders);
  marian (MarianMT encoder–decoder) → ``lmforge.io.hf_marian.load_hf_marian``;
- a ``.gguf`` file → ``lmforge.io.gguf.load_gguf``.

Adding a format or an HF architecture is one line in the tables below. What every HF folder shares (weights, sharded
or not; generation ids) is in :mod:`lmforge.io.hf_files`; every weight-name table is a list of
:class:`lmforge.io.weight_names.Row`.

Saving: :func:`save_model` (lmforge folder, any model), :func:`save_hf` (an HF folder ``transformers`` loads:
``save_hf_gpt`` or ``save_hf_bert`` by the model's family).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError, FormatError
from lmforge.fileio import recover_folder
from lmforge.io.model_parts import ModelParts

# HF config.json model_type → "module:function"
HF_LOADERS: dict[str, str] = {
    "gpt2": "lmforge.io.hf_gpt:load_hf_gpt",
    "llama": "lmforge.io.hf_gpt:load_hf_gpt",
    "mistral": "lmforge.io.hf_gpt:load_hf_gpt",
    "mixtral": "lmforge.io.hf_gpt:load_hf_gpt",
    "qwen2": "lmforge.io.hf_gpt:load_hf_gpt",
    "bert": "lmforge.io.hf_bert:load_hf_bert",
    "marian": "lmforge.io.hf_marian:load_hf_marian",
}
LMFORGE_LOADER = "lmforge.io.lmforge_format:load_lmforge"
GGUF_LOADER = "lmforge.io.gguf:load_gguf"


def _call(target: str, path: Path, options: dict) -> Any:
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)(path, **options)


def detect_format(path: Path) -> str:
    """The loader target for ``path`` (see the module docstring), or a FormatError/ConfigError saying why none."""
    from lmforge.io.hf_files import read_hf_config, transformer_folder

    if not path.exists():
        raise FormatError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return GGUF_LOADER
        raise FormatError(f"{path}: not a model (expected a .gguf file or a model folder)")
    if (path / "lmforge.json").exists():
        return LMFORGE_LOADER
    # A sentence-transformers folder may keep its transformer in a sub-folder (e.g. 0_Transformer/).
    config_path = transformer_folder(path) / "config.json"
    if config_path.exists():
        model_type = read_hf_config(config_path).get("model_type")
        if model_type not in HF_LOADERS:
            raise ConfigError(
                f"{config_path}: model_type {model_type!r} is not supported (supported: {', '.join(HF_LOADERS)})"
            )
        return HF_LOADERS[model_type]
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return GGUF_LOADER
    raise FormatError(f"{path}: not a model folder (expected lmforge.json, config.json or one .gguf file)")


def load_parts(path: str | os.PathLike, **options: Any) -> ModelParts:
    """Read an lmforge model folder, a Hugging Face model folder or a ``.gguf`` file → :class:`ModelParts`
    (model, tokenizer, config, generation ids). Users call :func:`lmforge.load`, which wraps them into an ``LM``."""
    path = Path(path)
    recover_folder(path)  # a save killed between its two renames left the old folder aside: put it back
    target = detect_format(path)
    if target == GGUF_LOADER and path.is_dir():
        path = sorted(path.glob("*.gguf"))[0]
    return _call(target, path, options)


def save_model(folder: str | os.PathLike, model: Any, tokenizer: Any = None, generation_config: dict | None = None):
    """Write an lmforge model folder (see :mod:`lmforge.io.lmforge_format`)."""
    from lmforge.io.lmforge_format import save_model as _save

    return _save(folder, model, tokenizer, generation_config)


def save_hf(folder: str | os.PathLike, model: Any, tokenizer: Any = None, generation_config: dict | None = None):
    """Write a GPT (:func:`lmforge.io.hf_gpt.save_hf_gpt`) or a BERT (:func:`lmforge.io.hf_bert.save_hf_bert`) as a
    Hugging Face folder ``transformers`` loads."""
    from lmforge.models.bert import Bert

    if isinstance(model, Bert):
        from lmforge.io.hf_bert import save_hf_bert

        return save_hf_bert(model, folder, tokenizer=tokenizer)
    from lmforge.io.hf_gpt import save_hf_gpt

    return save_hf_gpt(folder, model, tokenizer, generation_config)


__all__ = ["GGUF_LOADER", "HF_LOADERS", "LMFORGE_LOADER", "ModelParts", "detect_format", "load_parts", "save_hf",
           "save_model"]
