"""From a choice's token ids to the text a client sees: incremental decoding that holds back an incomplete UTF-8
character or the beginning of a stop string, cutting at a stop string, and token strings for logprobs."""

from __future__ import annotations

from typing import Any


def token_text(tokenizer: Any, token_id: int) -> tuple[str, bytes]:
    """A token's text and raw bytes (a byte-level token may hold part of a UTF-8 character: its text then shows
    U+FFFD, its bytes are exact — OpenAI's ``bytes`` field exists for this)."""
    raw = tokenizer.token_bytes(token_id) if hasattr(tokenizer, "token_bytes") else None
    if raw is None:
        text = tokenizer.decode([token_id], skip_special_tokens=False)
        return text, text.encode("utf-8")
    return raw.decode("utf-8", errors="replace"), raw


class TextAssembler:
    """The text of one choice as its ids arrive: :meth:`add` returns the new piece that is safe to show;
    ``"".join(pieces) + flush()`` is the decoded text, cut before the first stop string."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.text = ""  # decoded so far (cut at a stop string once one appears)
        self.shown = 0  # characters already handed out
        self.stopped = False

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.text, self.stopped = text[:cut], True
            return self.flush()
        self.text = text
        safe = len(text) - self._held_back(text)
        piece = text[self.shown : safe] if safe > self.shown else ""
        self.shown = max(self.shown, safe)
        return piece

    def flush(self) -> str:
        """Everything not shown yet (at the end of the choice)."""
        piece = self.text[self.shown :]
        self.shown = len(self.text)
        return piece

    def _held_back(self, text: str) -> int:
        n = len(text) - len(text.rstrip("\ufffd"))
        for s in self.stop:
            for size in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:size]):
                    n = max(n, size)
                    break
        return n
