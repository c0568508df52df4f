"""lmforge's own model folder: ``lmforge.json`` (``{"arch": ..., "config": {...}}`` plus ``generation`` ids),
``model.safetensors`` (lmforge parameter names; ``lmforge.json``'s ``"weights"`` may name another file) and, when
there is a tokenizer, ``tokenizer.json`` (the HF format). The folder is written as a whole (built beside the old one,
then swapped in), so an interrupted save leaves the old model or the new one, never a mix.

>>> save_model("run/model", model, tokenizer)   # doctest: +SKIP
>>> lm = lmforge.load("run/model")              # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from lmforge.errors import ConfigError, FormatError
from lmforge.fileio import read_json
from lmforge.io.folders import model_folder
from lmforge.io.model_parts import ModelParts
from lmforge.io.tokenizer_files import read_tokenizer_files, write_tokenizer_files

FORMAT_VERSION = 1
CONFIG_FILE = "lmforge.json"
WEIGHTS_FILE = "model.safetensors"

# arch → (module, model class, config class). One line per model family: the config class has ``to_dict()`` and
# ``from_dict(d, source)`` (which maps older field names), the model class ``from_state_dict(config, state, ...)``.
ARCHITECTURES: dict[str, tuple[str, str, str]] = {
    "gpt": ("lmforge.models.gpt", "GPT", "GPTConfig"),
    "bert": ("lmforge.models.bert", "Bert", "BertConfig"),
    "transformer": ("lmforge.models.transformer", "Transformer", "TransformerConfig"),
    "rnn_seq2seq": ("lmforge.models.rnn_seq2seq", "RNNSeq2Seq", "RNNSeq2SeqConfig"),
}


def _arch_of(model: torch.nn.Module) -> str:
    for arch, (module, cls_name, _) in ARCHITECTURES.items():
        if type(model).__module__ == module and type(model).__name__ == cls_name:
            return arch
    raise ConfigError(f"save_model: {type(model).__name__} is not a known lmforge model ({list(ARCHITECTURES)})")


def save_model(
    folder: str | os.PathLike, model: torch.nn.Module, tokenizer: Any = None, generation_config: dict | None = None,
    weights_file: str = WEIGHTS_FILE,
) -> Path:
    """Write ``model`` (and ``tokenizer``) as an lmforge model folder that :func:`lmforge.load` opens.

    Tied weights are stored once. ``generation_config`` (e.g. ``{"eos_token_id": [2]}``) is kept in
    ``lmforge.json``; by default the tokenizer's eos/bos/pad ids are recorded. ``weights_file``: another name
    than ``model.safetensors`` hides the weights from transformers, which opens any folder holding that file as
    whatever class it is asked for (default config, randomly initialised missing weights, only a warning).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    arch = _arch_of(model)
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        # Tied weights (e.g. the LM head that IS the embedding) are stored once; the model re-ties on load.
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            state[name] = tensor.detach().contiguous().cpu()
    gen = dict(generation_config or {})
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        if key not in gen and tokenizer is not None and getattr(tokenizer, key, None) is not None:
            gen[key] = getattr(tokenizer, key)
    meta = {"format": "lmforge", "version": FORMAT_VERSION, "arch": arch, "config": model.config.to_dict(),
            "generation": gen}
    if weights_file != WEIGHTS_FILE:
        meta["weights"] = weights_file
    from lmforge.io.quantize import QUANT_KEY, quantization_spec

    spec = quantization_spec(model)
    if spec:  # packed layers (lmforge.io.quantize): which module holds which format
        meta[QUANT_KEY] = spec
    # The whole folder is swapped in at once; a run folder's checkpoints and logs stay (io/folders.py).
    with model_folder(folder) as tmp:
        save_file(state, str(tmp / weights_file), metadata={"format": "pt"})
        if tokenizer is not None:
            write_tokenizer_files(tmp, tokenizer)
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder



def read_meta(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise FormatError(f"{path}: expected an object with 'arch' and a 'config' object")
    if meta.get("arch") not in ARCHITECTURES:
        raise ConfigError(f"{path}: arch {meta.get('arch')!r} is unknown (expected one of {list(ARCHITECTURES)})")
    return meta


def read_lmforge_model(folder: str | os.PathLike, *, dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, dict]:
    """``(model in eval mode, lmforge.json contents)`` from an lmforge model folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = read_meta(folder)
    module, model_name, config_name = ARCHITECTURES[meta["arch"]]
    mod = importlib.import_module(module)
    config_cls, model_cls = getattr(mod, config_name), getattr(mod, model_name)
    source = str(folder / CONFIG_FILE)
    config = config_cls.from_dict(meta["config"], source)
    weights_name = meta.get("weights", WEIGHTS_FILE)
    if not isinstance(weights_name, str) or Path(weights_name).name != weights_name:
        raise FormatError(f"{source}: 'weights' must name a file in the folder, got {weights_name!r}")
    weights_path = folder / weights_name
    try:
        state = load_file(str(weights_path))
    except FileNotFoundError:
        raise FormatError(f"{weights_path}: file not found") from None
    except Exception as e:  # safetensors' own error types for truncated / corrupt files
        raise FormatError(f"{weights_path}: not a readable safetensors file ({e})") from None
    if "quantization" in meta:  # quantized layers (lmforge.io.quantize)
        from lmforge.io.quantize import load_quantized_model

        return load_quantized_model(folder, meta, state, str(weights_path), dtype), meta
    model = model_cls.from_state_dict(config, state, str(weights_path), dtype=dtype)
    return model.eval(), meta


def load_lmforge(path: str | os.PathLike, *, dtype: torch.dtype | None = None, **_: Any) -> ModelParts:
    """The loader for an lmforge model folder (:func:`lmforge.load` wraps the parts into an ``LM``)."""
    folder = Path(path)
    model, meta = read_lmforge_model(folder, dtype=dtype)
    return ModelParts(model=model, tokenizer=read_tokenizer_files(folder), config=model.config,
                      generation_config=meta.get("generation") or {}, path=folder)
