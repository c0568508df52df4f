"""Saving a model folder as a whole: which names are model artifacts, and the swap every saver goes through.

A saver builds the new folder beside the old one and swaps it in (:func:`lmforge.fileio.atomic_folder`), so an
interrupted save leaves the old model or the new one, never a mix. Files that are not model artifacts (a run
folder's ``checkpoints/``, ``metrics.jsonl``, ``loss.png``, ``train_config.json``, a README) move into the new
folder; model artifacts of the old folder (stale weight shards, an index, the other format's config) do not.

>>> [is_model_file(n) for n in ("model-00002-of-00003.safetensors", "config.json", "checkpoints", "loss.png")]
[True, True, False, False]
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path

from lmforge.fileio import atomic_folder

MODEL_FILE_PATTERNS = (
    "lmforge.json", "config.json", "generation_config.json",
    "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model*.bin.index.json", "*.gguf",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.lmforge.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "[0-9]_*",
)


def is_model_file(name: str) -> bool:
    """Whether an entry of a model folder is part of the model (replaced by a save) rather than kept beside it."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in MODEL_FILE_PATTERNS)


@contextlib.contextmanager
def model_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A temp folder to write a model into; on clean exit it replaces ``path`` as a whole, keeping the entries of
    an existing ``path`` that are not model artifacts (:func:`is_model_file`)."""
    with atomic_folder(path, keep=lambda name: not is_model_file(name)) as tmp:
        yield tmp
