"""What every Hugging Face model folder shares, whatever the model family: ``config.json``, the weights (one
``model.safetensors``, a sharded ``model.safetensors.index.json`` + shards, or ``pytorch_model.bin`` read with
``weights_only=True``), ``generation_config.json``, and the sentence-transformers layout that keeps the transformer in
a sub-folder named by ``modules.json``."""

from __future__ import annotations

from pathlib import Path

import torch

from lmforge.errors import FormatError
from lmforge.fileio import read_json


def read_hf_config(path: Path) -> dict:
    """A ``config.json``-like file as a dict; FormatError naming the file when it is missing or not an object."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object")
    return data


def transformer_folder(path: Path) -> Path:
    """The folder that holds config.json: ``path`` itself or the Transformer module named in ``modules.json``."""
    modules = path / "modules.json"
    if modules.is_file() and not (path / "config.json").is_file():
        for m in read_json(modules):
            if str(m.get("type", "")).endswith(".Transformer"):
                return path / m.get("path", "")
    return path


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except Exception as e:  # safetensors raises its own error types for corrupt/truncated files
        raise FormatError(f"{path}: not a readable safetensors file ({e})") from None


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF folder by their HF names, from ``model.safetensors``, the shards listed in
    ``model.safetensors.index.json``, or ``pytorch_model.bin``."""
    if (folder / "model.safetensors").exists():
        return _load_safetensors(folder / "model.safetensors")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_hf_config(index).get("weight_map")
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        if not shards:
            raise FormatError(f"{index}: 'weight_map' is missing or empty")
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(_load_safetensors(folder / shard))
        return weights
    bin_path = folder / "pytorch_model.bin"
    if bin_path.exists():
        try:
            return torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unpickling failure is a bad file
            raise FormatError(f"{bin_path}: cannot be read as a PyTorch state dict ({e})") from None
    raise FormatError(f"{folder}: no weights found (expected model.safetensors, model.safetensors.index.json "
                      "or pytorch_model.bin)")


def read_generation_config(folder: Path, hf_config: dict | None = None) -> dict:
    """eos/bos/pad ids: ``generation_config.json`` first, then ``config.json``. ``eos_token_id`` is a list."""
    path = folder / "generation_config.json"
    gen = read_hf_config(path) if path.exists() else {}
    hf_config = hf_config or {}
    out = {}
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        value = gen.get(key, hf_config.get(key))
        if value is not None:
            out[key] = value
    eos = out.get("eos_token_id")
    if eos is not None and not isinstance(eos, list):
        out["eos_token_id"] = [eos]
    return out
