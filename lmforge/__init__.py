"""lmforge: how transformer language models work, implemented for real.

Top-level entry points are imported lazily so that ``import lmforge`` (and ``lmforge --help``) stay fast
and do not pull in torch until a model is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from lmforge.errors import LmforgeError

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "train_tokenizer": "lmforge.tokenizers",
    "load_tokenizer": "lmforge.tokenizers",
    "Tokenizer": "lmforge.tokenizers",
    "load": "lmforge.lm",
    "LM": "lmforge.lm",
}

__all__ = ["LmforgeError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")
