"""What a loader returns: the parts of a model read from disk, before :func:`lmforge.load` wraps them into the
user's :class:`lmforge.lm.LM`. (``io/`` sits below ``lm.py`` in the layers, so loaders never build the LM.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelParts:
    """``model`` (an ``nn.Module`` in eval mode), ``tokenizer`` (lmforge ``Tokenizer`` or None), ``config`` (the
    model's config dataclass), ``generation_config`` (eos/bos/pad ids found beside the weights), ``path``,
    ``sentence_config`` (encoders: how token states are pooled into a sentence vector; None: the default)."""

    model: Any
    tokenizer: Any = None
    config: Any = None
    generation_config: dict = field(default_factory=dict)
    path: Path | None = None
    sentence_config: Any = None
