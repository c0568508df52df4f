"""The one object users hold: ``lm = lmforge.load(path)`` → :class:`LM` (model + tokenizer + config)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.errors import FormatError


def load_folder_tokenizer(folder: Path) -> Any:
    """The folder's ``tokenizer.json`` as an lmforge ``Tokenizer`` (None when there is none); a chat template
    from ``tokenizer_config.json`` is attached when the tokenizer itself has none."""
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    from lmforge.tokenizers import Tokenizer

    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: not valid JSON ({e})") from None
    tokenizer = Tokenizer.from_hf_json(obj, where=str(path))
    config_path = folder / "tokenizer_config.json"
    if config_path.exists():
        try:
            extra = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FormatError(f"{config_path}: not valid JSON ({e})") from None
        extra = extra if isinstance(extra, dict) else {}
        if isinstance(extra.get("chat_template"), str) and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = extra["chat_template"]
        for role in ("bos", "eos", "pad", "unk"):
            # tokenizer.json has no notion of roles: the eos/bos/pad tokens are named here, and win over guesses
            token = extra.get(f"{role}_token")
            if isinstance(token, dict):  # older files: {"content": "<s>", ...}
                token = token.get("content")
            if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
                setattr(tokenizer, f"{role}_token", token)
    return tokenizer


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

    # ------------------------------------------------------------------ chat (lmforge.chat) — GGUF engineer
    def chat(self, messages: list[dict[str, Any]], *, stream: bool = False, **options: Any) -> str | Iterator[str]:
        """The assistant's reply to ``messages`` (``[{"role": "user", "content": "Hi"}, ...]``), rendered with the
        model's chat template (:func:`lmforge.chat.chat_prompt`) and decoded with the ``generate`` options;
        ``stream=True`` yields the reply in pieces instead."""
        from lmforge.chat import chat_prompt, without_added_bos

        if self.tokenizer is None:
            raise FormatError(f"{self.path}: the model has no tokenizer, so no chat template")
        prompt = without_added_bos(self.tokenizer, chat_prompt(self.tokenizer, messages))
        return self.stream(prompt, **options) if stream else self.generate(prompt, **options)

    # ------------------------------------------------------------------ embed (lmforge.embed) — BERT engineer
    def embed(self, texts: list[str], batch_size: int = 32) -> Any:
        """Sentence embeddings ``numpy.ndarray (N, D)`` of an encoder, pooled as its sentence-transformers config
        says (``self.sentence_config``; none: mean pooling, no normalisation). See :func:`lmforge.embed.embed`."""
        from lmforge.embed import embed

        if not hasattr(self.model, "encode"):
            raise FormatError(f"{self.path}: {type(self.model).__name__} is not an encoder; embed needs e.g. BERT")
        if self.tokenizer is None:
            raise FormatError(f"{self.path}: the model has no tokenizer (vocab.txt or tokenizer.json)")
        return embed(self.model, self.tokenizer, texts, batch_size, self.sentence_config)
