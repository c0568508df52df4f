"""The contract every subword model keeps, so that ``Tokenizer`` runs any of them the same way.

A model cuts one pre-token (a *word*: a str the pre-tokenizer produced) into vocabulary ids. Byte-level BPE
(``bpe.BPEModel``), character-level BPE with byte fallback (``bpe.CharBPEModel``), WordPiece
(``wordpiece.WordPieceModel``) and Unigram (``unigram.UnigramModel``) implement it; a new model type is one class
with these methods (see ``docs/tokenizers-internals.md``).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Protocol


class Token(NamedTuple):
    """One token of a word: its id and the char span ``word[start:end]`` it covers (a token that is part of a
    multi-byte character covers that whole character)."""

    id: int
    start: int
    end: int


tokens_of = partial(tuple.__new__, Token)  # (id, start, end) → Token at C speed: list(map(tokens_of, triples))


class Model(Protocol):
    """What ``Tokenizer`` asks of a subword model.

    ``kind`` is how the tokenizer presents itself (``"bpe"``, ``"wordpiece"``, ``"unigram"``); ``unk_id`` the id
    used for what the vocabulary cannot spell (None: such input is dropped or refused).
    """

    kind: str
    unk_id: int | None

    def encode(self, word: str) -> list[int]:
        """Ids of one word; equal to ``[t.id for t in tokenize(word)]`` (the fast path: no spans)."""

    def tokenize(self, word: str) -> list[Token]:
        """Ids of one word with the char span each covers."""

    def explain(self, word: str) -> dict[str, Any]:
        """How the word was cut, as fields of ``Tokenizer.explain``'s record (``merges``, and ``steps`` or
        ``scores`` where the model has them)."""

    def id_to_token(self, id: int) -> str | None:
        """The model's own token string for ``id`` (None if the model does not own it)."""

    def token_to_id(self, token: str) -> int | None:
        """The id of a token string of the model's vocabulary, or None."""

    def default_decoder(self) -> Any:
        """The decoder to use when the file names none (``decoders.Decoder``, or None: join with spaces)."""

    def to_hf(self, vocab: dict[str, int], unk_token: str | None) -> dict[str, Any]:
        """The ``model`` object of a HF ``tokenizer.json`` (``vocab``: the tokenizer's whole vocabulary by id,
        ``unk_token``: its unk role)."""

    def lmforge_fields(self, hf_model: dict[str, Any]) -> dict[str, Any]:
        """The ``model`` fields of lmforge's own file besides ``type`` and ``tokens``."""

    def clear_cache(self) -> None:
        """Forget any memo of encoded words (a cold start for benchmarks)."""

    def encode_many_words(self, words: list[str]) -> list[list[int]]:
        """``[encode(w) for w in words]``, batched where the model has a compiled path."""

    def encode_text(self, text: str, mode: int) -> list[int] | None:
        """Split ``text`` with the compiled GPT-2 (``mode`` 0) / cl100k (1) splitter and encode it; None where
        the model has no such path (the tokenizer then splits and encodes piece by piece)."""

    def tokenize_ids(self, word: str, ids: list[int]) -> list[Token]:
        """``tokenize(word)`` given ``ids == encode(word)`` (the tokenizer's memo of ids)."""


class BaseModel:
    """What most models do for the optional parts of the contract: no compiled path, no memo of their own, and
    (as HF with no decoder) tokens joined with spaces."""

    def encode_many_words(self, words: list[str]) -> list[list[int]]:
        """``[encode(w) for w in words]`` (a model with a batched compiled path overrides it)."""
        return [self.encode(w) for w in words]

    def encode_text(self, text: str, mode: int) -> list[int] | None:
        """Split (compiled splitter ``mode``) and encode a whole text; None: no such path here."""
        return None

    def tokenize_ids(self, word: str, ids: list[int]) -> list[Token]:
        """``tokenize(word)`` when ``ids == encode(word)`` is known already (a model that can find the spans
        from the ids alone overrides it)."""
        return self.tokenize(word)

    def default_decoder(self):
        return None

    def clear_cache(self) -> None:
        pass
