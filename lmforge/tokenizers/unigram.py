"""The Unigram language model tokenizer (SentencePiece's default; T5, ALBERT, XLNet, mBART): loading and encoding.

A Unigram vocabulary is a list of pieces with a log-probability each. A word's segmentation is the sequence of
pieces that spells it with the highest total score, found by Viterbi over the lattice of every vocabulary piece
that starts at every character. A character no piece covers is an unknown, scored ``min(scores) - 10`` (HF's and
SentencePiece's penalty), so the best path uses it only when nothing else spells that character. Consecutive
unknowns are fused into one; with ``byte_fallback`` an unknown becomes its UTF-8 bytes as ``<0xNN>`` pieces.

Training a Unigram model (EM + pruning) is not implemented: train one with HF ``tokenizers`` or SentencePiece and
load its ``tokenizer.json``.
"""

from __future__ import annotations

from lmforge.errors import InputError
from lmforge.tokenizers.alphabet import byte_token
from lmforge.tokenizers.bpe import check_encodable
from lmforge.tokenizers.model import BaseModel, Token, tokens_of

UNK_PENALTY = 10.0  # an unknown char scores this far below the least likely piece


class UnigramModel(BaseModel):
    """Pieces with log-probabilities; ``encode_word`` runs Viterbi.

    ``pieces[id] = (piece, score)``. The piece look-up is a dict plus the set of every piece prefix, so the scan
    from one position stops as soon as no piece can continue (a trie held in two dicts).

    >>> m = UnigramModel([("<unk>", 0.0), ("a", -1.0), ("b", -2.0), ("ab", -2.5)], unk_id=0)
    >>> [m.pieces[i][0] for i in m.encode_word("abba")]
    ['ab', 'b', 'a']
    """

    def __init__(self, pieces: list[tuple[str, float]], *, unk_id: int | None = None, byte_fallback: bool = False):
        self.pieces = [(str(p), float(s)) for p, s in pieces]
        self.unk_id = unk_id
        self.byte_fallback = byte_fallback
        self.piece_to_id: dict[str, int] = {}
        for i, (p, _) in enumerate(self.pieces):
            self.piece_to_id[p] = i  # a piece listed twice keeps its last id, as HF
        self.prefixes = {p[:k] for p, _ in self.pieces for k in range(1, len(p) + 1)}
        self.min_score = min((s for _, s in self.pieces), default=0.0)
        self.unk_score = self.min_score - UNK_PENALTY
        self.byte_ids = [self.piece_to_id.get(byte_token(b)) for b in range(256)]

    def viterbi(self, word: str) -> list[tuple[int, int, int | None]]:
        """The best segmentation of ``word``: ``(start, end, id)`` char spans, ``id`` None for a run of unknown
        characters (fused, as HF). Among equal scores the earlier-found candidate wins: shorter pieces, then
        earlier starts (the order HF and SentencePiece scan the lattice in).

        >>> UnigramModel([("<unk>", 0.0), ("a", -1.0), ("b", -1.0), ("ab", -1.5)], unk_id=0).viterbi("abc")
        [(0, 2, 3), (2, 3, None)]
        """
        n = len(word)
        best = [0.0] * (n + 1)  # best[e]: score of the best path that spells word[:e]
        back: list[tuple[int, int] | None] = [None] * (n + 1)  # back[e] = (start, id) of that path's last piece
        for start in range(n):
            here = best[start]
            covered = False
            end = start
            while end < n and word[start:end + 1] in self.prefixes:
                end += 1
                i = self.piece_to_id.get(word[start:end])
                if i is None:
                    continue
                score = self.pieces[i][1] + here
                if back[end] is None or score > best[end]:
                    best[end], back[end] = score, (start, i)
                if end == start + 1:
                    covered = True
            if not covered:  # the unknown edge over one char
                if self.unk_id is None:
                    raise InputError(f"{word[start]!r} (U+{ord(word[start]):04X}) is not in the Unigram vocabulary "
                                     "and the model has no unk_id")
                score = self.unk_score + here
                if back[start + 1] is None or score > best[start + 1]:
                    best[start + 1], back[start + 1] = score, (start, -1)
        spans: list[tuple[int, int, int | None]] = []
        end = n
        while end > 0:
            start, i = back[end]
            unknown = i == -1 or (i == self.unk_id)
            if unknown and spans and spans[-1][2] is None:  # fuse with the unknown run after it
                spans[-1] = (start, spans[-1][1], None)
            else:
                spans.append((start, end, None if unknown else i))
            end = start
        spans.reverse()
        return spans

    kind = "unigram"

    def tokenize(self, word: str) -> list[Token]:
        """``Token(id, start, end)`` per token: Viterbi pieces; an unknown run becomes its bytes (all sharing the
        run's span) when ``byte_fallback`` finds them all, else ``unk_id``.

        >>> UnigramModel([("<unk>", 0.0), ("a", -1.0)], unk_id=0).tokenize("aé")
        [Token(id=1, start=0, end=1), Token(id=0, start=1, end=2)]
        """
        return list(map(tokens_of, self._spans(word)))

    def _spans(self, word: str) -> list[tuple[int, int, int]]:
        """``tokenize`` as plain ``(id, start, end)`` tuples (the encode path makes no ``Token`` objects)."""
        out = []
        for start, end, i in self.viterbi(word):
            if i is not None:
                out.append((i, start, end))
                continue
            text = word[start:end]
            known = self.piece_to_id.get(text)  # a fused run may spell a piece (e.g. the unk piece itself)
            if known is not None:
                out.append((known, start, end))
                continue
            if self.byte_fallback:
                fallback = [self.byte_ids[b] for b in text.encode("utf-8", errors="surrogatepass")]
                if None not in fallback:
                    out.extend((b, start, end) for b in fallback)
                    continue
            out.append((self.unk_id, start, end))
        return out

    def encode_word(self, word: str) -> list[int]:
        return [i for i, _, _ in self._spans(word)]

    def explain_word(self, word: str) -> list[tuple[str, float]]:
        """The Viterbi pieces with their scores (an unknown run scores the unknown penalty per char)."""
        out = []
        for start, end, i in self.viterbi(word):
            if i is None:
                out.append((word[start:end], self.unk_score * (end - start)))
            else:
                out.append(self.pieces[i])
        return out

    # ------------------------------------------------------------------------------------ the Model contract
    def encode(self, word: str) -> list[int]:
        check_encodable(word)
        return [i for i, _, _ in self._spans(word)]

    def explain(self, word: str) -> dict:
        """``{"merges": [], "scores": [(piece, log-probability), ...]}``: the Viterbi pieces."""
        return {"merges": [], "scores": self.explain_word(word)}

    def id_to_token(self, id: int) -> str | None:
        return self.pieces[id][0] if 0 <= id < len(self.pieces) else None

    def token_to_id(self, token: str) -> int | None:
        return self.piece_to_id.get(token)

    def to_hf(self, vocab: dict[str, int], unk_token: str | None) -> dict:
        return {"type": "Unigram", "unk_id": self.unk_id, "vocab": [list(p) for p in self.pieces],
                "byte_fallback": self.byte_fallback}

    def lmforge_fields(self, hf_model: dict) -> dict:
        fields = {k: v for k, v in hf_model.items() if k != "type"}
        fields["scores"] = [score for _, score in fields.pop("vocab")]
        return fields
