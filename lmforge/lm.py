"""The one object users hold: ``lm = lmforge.load(path)`` → :class:`LM` (model + tokenizer + config).

It sits above the orchestration layer: :func:`load` asks :mod:`lmforge.io` for the model's parts, and the methods are
thin calls into :mod:`lmforge.generate`, :mod:`lmforge.chat` and :mod:`lmforge.embed`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.errors import FormatError
from lmforge.io import ModelParts, load_parts


def load(path: str | os.PathLike, **options: Any) -> LM:
    """Open an lmforge model folder, a Hugging Face model folder or a ``.gguf`` file → :class:`LM`.

    ``options`` go to the format's loader (e.g. ``dtype=torch.bfloat16``; ``cache=False`` for GGUF).

    >>> lm = lmforge.load("path/to/model")                   # doctest: +SKIP
    >>> lm.generate("The capital of France is", max_new_tokens=5)  # doctest: +SKIP
    """
    return LM.from_parts(load_parts(path, **options))


class LM:
    """A loaded language model: ``model`` (an ``nn.Module`` in eval mode), ``tokenizer`` (lmforge ``Tokenizer`` or
    None), ``config`` (the model's config dataclass), ``generation_config`` (``eos_token_id`` list, ``bos_token_id``,
    ``pad_token_id`` as found beside the weights), ``path`` (where it came from).

    Capabilities are thin methods over library functions, so a Python user can call those directly too:
    ``generate``/``stream`` (:mod:`lmforge.generate`), ``chat`` (:mod:`lmforge.chat`), ``embed``
    (:mod:`lmforge.embed`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        config: Any = None,
        *,
        generation_config: dict | None = None,
        path: str | Path | None = None,
        sentence_config: Any = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config if config is not None else getattr(model, "config", None)
        self.generation_config = dict(generation_config or {})
        self.path = Path(path) if path is not None else None
        self.sentence_config = sentence_config  # encoders: how token states are pooled (lmforge.embed)

    @classmethod
    def from_parts(cls, parts: ModelParts) -> LM:
        """The LM of what a loader read (:func:`lmforge.io.load_parts`)."""
        return cls(parts.model, parts.tokenizer, parts.config, generation_config=parts.generation_config,
                   path=parts.path, sentence_config=parts.sentence_config)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return f"LM({type(self.model).__name__}, {n / 1e6:.1f}M parameters, path={str(self.path)!r})"

    @property
    def eos_token_ids(self) -> list[int]:
        """End-of-sequence ids: generation_config.json / config.json / GGUF metadata, else the tokenizer's eos.
        Ids outside the vocabulary are dropped with a warning."""
        ids = self.generation_config.get("eos_token_id")
        if ids is None and self.tokenizer is not None and getattr(self.tokenizer, "eos_token_id", None) is not None:
            ids = [self.tokenizer.eos_token_id]
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        vocab = getattr(self.config, "vocab_size", None)
        good = [i for i in ids if vocab is None or 0 <= i < vocab]
        if len(good) != len(ids):
            warnings.warn(f"eos_token_id {sorted(set(ids) - set(good))} outside the vocabulary ({vocab}): ignored",
                          stacklevel=2)
        return good

    # ------------------------------------------------------------------ decoding (lmforge.generate)
    def generate(self, prompt: str | list[str], **options: Any) -> str | list[str]:
        """New text for a prompt (or a list of prompts); options as in :func:`lmforge.generate.generate`."""
        from lmforge.generate import generate

        return generate(self, prompt, **options)

    def stream(self, prompt: str, **options: Any) -> Iterator[str]:
        """Text pieces as they are produced; ``"".join(lm.stream(p)) == lm.generate(p)``."""
        from lmforge.generate import stream

        return stream(self, prompt, **options)

    # ------------------------------------------------------------------ chat (lmforge.chat)
    def chat(self, messages: list[dict[str, Any]], *, stream: bool = False, **options: Any) -> str | Iterator[str]:
        """The assistant's reply to ``messages`` (``[{"role": "user", "content": "Hi"}, ...]``), rendered with the
        model's chat template (:func:`lmforge.chat.chat_prompt`) and decoded with the ``generate`` options;
        ``stream=True`` yields the reply in pieces instead."""
        from lmforge.chat import chat_prompt, without_added_bos

        if self.tokenizer is None:
            raise FormatError(f"{self.path}: the model has no tokenizer, so no chat template")
        prompt = without_added_bos(self.tokenizer, chat_prompt(self.tokenizer, messages))
        return self.stream(prompt, **options) if stream else self.generate(prompt, **options)

    # ------------------------------------------------------------------ embed (lmforge.embed)
    def embed(self, texts: list[str], batch_size: int = 32) -> Any:
        """Sentence embeddings ``numpy.ndarray (N, D)`` of an encoder, pooled as its sentence-transformers config
        says (``self.sentence_config``; none: mean pooling, no normalisation). See :func:`lmforge.embed.embed`."""
        from lmforge.embed import embed

        if not hasattr(self.model, "encode"):
            raise FormatError(f"{self.path}: {type(self.model).__name__} is not an encoder; embed needs e.g. BERT")
        if self.tokenizer is None:
            raise FormatError(f"{self.path}: the model has no tokenizer (vocab.txt or tokenizer.json)")
        return embed(self.model, self.tokenizer, texts, batch_size, self.sentence_config)

    # ------------------------------------------------------------------ fill-mask (lmforge.fill_mask)
    def fill_mask(self, text: str, top_k: int = 5) -> list[list[Any]]:
        """For each mask token in ``text``, the ``top_k`` likeliest tokens (:func:`lmforge.fill_mask.fill_mask`)."""
        from lmforge.fill_mask import fill_mask

        if self.tokenizer is None:
            raise FormatError(f"{self.path}: the model has no tokenizer (vocab.txt or tokenizer.json)")
        return fill_mask(self.model, self.tokenizer, text, top_k)
