"""Byte-level BPE, the readable reference: byte alphabet, merges by rank, and an incremental trainer.

A byte-level BPE vocabulary starts from the 256 byte values, so every string is representable. Training
repeatedly fuses the most frequent adjacent pair into a new token (a *merge*); encoding replays the merges on
each pre-token, lowest rank first. Token ids are plain ints; ``BPEModel.token_bytes[id]`` is what a token
stands for. Token *strings* (as in GPT-2's ``vocab.json``) use the printable bytes-to-unicode alphabet.

These pure-Python functions are the reference; ``lmforge.tokenizers.fast`` compiles the same loops with numba
and is tested against them.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable

from lmforge.errors import InputError
from lmforge.tokenizers.alphabet import (  # noqa: F401 - re-exported: the public spelling of these names
    byte_token,
    bytes_to_token_string,
    bytes_to_unicode,
    token_string_to_bytes,
    unicode_to_bytes,
)
from lmforge.tokenizers.model import BaseModel, Token, tokens_of
from lmforge.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN  # noqa: F401 - re-exported


def get_stats(ids: list[int], counts: dict[tuple[int, int], int] | None = None, weight: int = 1):
    """Count adjacent pairs, adding ``weight`` per occurrence.

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` (left to right) by ``new_id``.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    """
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def apply_merges(ids: list[int], pair_table: dict[tuple[int, int], tuple[int, int]]) -> list[int]:
    """Encode one pre-token: repeatedly apply the lowest-rank merge present (``pair -> (rank, new_id)``).

    >>> apply_merges([104, 105, 33], {(104, 105): (0, 256), (256, 33): (1, 257)})
    [257]
    """
    ids = list(ids)
    while len(ids) >= 2:
        best = None
        for pair in zip(ids, ids[1:], strict=False):
            hit = pair_table.get(pair)
            if hit is not None and (best is None or hit[0] < best[1][0]):
                best = (pair, hit)
        if best is None:
            break
        ids = merge(ids, best[0], best[1][1])
    return ids


class BPEModel(BaseModel):
    """A byte-level BPE vocabulary: what each id stands for and how pairs merge.

    ``token_bytes[id]`` is the byte string of token ``id`` (``None`` for ids the model does not own, e.g. added
    special tokens in between). ``pair_table[(a, b)] = (rank, new_id)``: lower rank merges first.
    ``merges`` is the ordered merge list (as in ``merges.txt``).
    """

    def __init__(
        self,
        token_bytes: list[bytes | None],
        merges: list[tuple[int, int]],
        *,
        pair_table: dict[tuple[int, int], tuple[int, int]] | None = None,
        ignore_merges: bool = False,
        unk_id: int | None = None,
    ):
        self.token_bytes = list(token_bytes)
        self.merges = list(merges)
        self.ignore_merges = ignore_merges
        self.unk_id = unk_id
        self.bytes_to_id: dict[bytes, int] = {b: i for i, b in enumerate(self.token_bytes) if b is not None}
        # id of each single byte, -1 where the vocabulary lacks it (HF drops such bytes unless unk is set)
        self.byte_ids = [self.bytes_to_id.get(bytes([b]), -1) for b in range(256)]
        if pair_table is None:
            pair_table = {}
            for rank, (a, b) in enumerate(self.merges):
                new = self.bytes_to_id.get(self.token_bytes[a] + self.token_bytes[b])
                if new is not None and (a, b) not in pair_table:
                    pair_table[(a, b)] = (rank, new)
        self.pair_table = pair_table
        self.rank_based = False  # True for tiktoken ranks: pairs merge when their concatenation is a token
        self._fast = None  # numba tables (fast.FastBPE), built on first bulk use; False where they cannot apply

    kind = "bpe"

    # ------------------------------------------------------------------------------------ the Model contract
    def encode(self, word: str) -> list[int]:
        """Ids of one pre-token (a str): its UTF-8 bytes through ``encode_word``.

        >>> BPEModel([bytes([i]) for i in range(256)] + [b"hi"], [(104, 105)]).encode("hi!")
        [256, 33]
        """
        try:
            data = word.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(
                f"text holds {word[e.start]!r} (U+{ord(word[e.start]):04X}), a lone surrogate that cannot be "
                "UTF-8 encoded; expected valid Unicode text") from None
        return self.encode_word(data)

    def tokenize(self, word: str) -> list[Token]:
        """``encode`` with the char span of each token (a token ending inside a multi-byte char covers it).

        >>> BPEModel([bytes([i]) for i in range(256)], []).tokenize("é")
        [Token(id=195, start=0, end=1), Token(id=169, start=0, end=1)]
        """
        return self.tokenize_ids(word, self.encode(word))

    def tokenize_ids(self, word: str, ids: list[int]) -> list[Token]:
        """The spans of ``ids`` (``encode(word)``) from their byte lengths: no BPE run again."""
        tb = self.token_bytes
        lengths = [len(tb[i] or b"") if i < len(tb) else 1 for i in ids]
        spans = byte_token_offsets(word, lengths)
        return list(map(tokens_of, [(i, s, e) for i, (s, e) in zip(ids, spans, strict=True)]))

    def explain(self, word: str) -> dict:
        """``{"merges": [(left, right, merged), ...]}``: the merges applied to ``word``, in order."""
        steps = self.explain_word(word.encode("utf-8", errors="surrogatepass"))
        name = self.id_to_token
        return {"merges": [(name(a), name(b), name(n)) for _, a, b, n in steps]}

    def id_to_token(self, id: int) -> str | None:
        b = self.token_bytes[id] if 0 <= id < len(self.token_bytes) else None
        return None if b is None else bytes_to_token_string(b)

    def token_to_id(self, token: str) -> int | None:
        try:
            return self.bytes_to_id.get(token_string_to_bytes(token))
        except KeyError:
            return None

    def default_decoder(self):
        from lmforge.tokenizers.decoders import ByteLevelDecoder

        return ByteLevelDecoder()

    def ordered_merges(self) -> list[tuple[int, int]]:
        """The merge list, recovered from the ranks first for tiktoken-style models (which have none)."""
        if self.rank_based and not self.merges:
            self.merges = merges_from_ranks(self.token_bytes)
        return self.merges

    def use_ranks(self) -> None:
        """Merge by tiktoken's rule (two tokens merge when their concatenation is a token, lowest rank first)."""
        self.pair_table = pair_table_from_ranks(self.token_bytes)
        self.rank_based = True
        self._fast = None

    def to_hf(self, vocab: dict[str, int], unk_token: str | None) -> dict:
        name = self.id_to_token
        return {"type": "BPE", "dropout": None, "unk_token": unk_token if self.unk_id is not None else None,
                "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
                "byte_fallback": False, "ignore_merges": self.ignore_merges, "vocab": vocab,
                "merges": [[name(a), name(b)] for a, b in self.ordered_merges()]}

    def lmforge_fields(self, hf_model: dict) -> dict:
        return {"merges": [list(m) for m in self.ordered_merges()], "rank_based": self.rank_based,
                "ignore_merges": self.ignore_merges, "unk_token": hf_model.get("unk_token")}

    # ------------------------------------------------------------------------- the compiled (numba) path
    def _compiled(self):
        """The numba tables, built once; None where they cannot reproduce ``encode_word`` (missing bytes,
        ``ignore_merges``) or numba is absent."""
        if self._fast is None:
            from lmforge.tokenizers import fast

            self._fast = fast.FastBPE(self) if fast.numba is not None else False
        return self._fast if self._fast and self._fast.usable else None

    def encode_many_words(self, words: list[str]) -> list[list[int]]:
        """``[encode(w) for w in words]``, in one compiled call where it applies."""
        compiled = self._compiled()
        if compiled is not None:
            try:
                return compiled.encode_pieces(words)
            except UnicodeEncodeError:
                pass  # the reference path raises the clear lone-surrogate error
        return [self.encode(w) for w in words]

    def encode_text(self, text: str, mode: int) -> list[int] | None:
        """Split ``text`` with the compiled GPT-2 (``mode`` 0) / cl100k (1) splitter and encode every piece, memo
        kept between calls; None where the compiled path does not apply (then use the reference)."""
        compiled = self._compiled()
        if compiled is None:
            return None
        from lmforge.tokenizers import fast

        return fast.encode_text(compiled, text, mode)

    def clear_cache(self) -> None:
        if self._fast:
            self._fast.piece_cache = None

    def encode_word(self, word: bytes) -> list[int]:
        """Ids of one pre-token (its UTF-8 bytes): start from single bytes, apply merges by rank.

        >>> m = BPEModel([bytes([i]) for i in range(256)] + [b"hi"], [(104, 105)]); m.encode_word(b"hi!")
        [256, 33]
        """
        if self.ignore_merges:
            whole = self.bytes_to_id.get(word)
            if whole is not None:
                return [whole]
        ids = []
        for b in word:
            i = self.byte_ids[b]
            if i >= 0:
                ids.append(i)
            elif self.unk_id is not None:
                ids.append(self.unk_id)
        return apply_merges(ids, self.pair_table)

    def explain_word(self, word: bytes) -> list[tuple[int, int, int, int]]:
        """The merges applied to one pre-token, in order: ``(rank, left_id, right_id, new_id)``."""
        ids = [self.byte_ids[b] for b in word if self.byte_ids[b] >= 0]
        steps = []
        while len(ids) >= 2:
            best = None
            for pair in zip(ids, ids[1:], strict=False):
                hit = self.pair_table.get(pair)
                if hit is not None and (best is None or hit[0] < best[1][0]):
                    best = (pair, hit)
            if best is None:
                break
            steps.append((best[1][0], best[0][0], best[0][1], best[1][1]))
            ids = merge(ids, best[0], best[1][1])
        return steps


def pair_table_from_ranks(token_bytes: list[bytes | None]) -> dict[tuple[int, int], tuple[int, int]]:
    """tiktoken's rule: two adjacent tokens merge when their concatenation is a token, lowest rank first.

    For each token, every split into two tokens becomes a pair whose rank is the token's id (= its rank).

    >>> pair_table_from_ranks([b"a", b"b", b"ab"])
    {(0, 1): (2, 2)}
    """
    to_id = {b: i for i, b in enumerate(token_bytes) if b is not None}
    table = {}
    for i, tb in enumerate(token_bytes):
        if tb is None or len(tb) < 2:
            continue
        for cut in range(1, len(tb)):
            left, right = to_id.get(tb[:cut]), to_id.get(tb[cut:])
            if left is not None and right is not None:
                table[(left, right)] = (i, i)
    return table


def merges_from_ranks(token_bytes: list[bytes | None]) -> list[tuple[int, int]]:
    """Recover a merge list from tiktoken-style ranks: BPE-encode each token with only the lower-ranked
    tokens; what remains is the two halves that merge into it.

    >>> merges_from_ranks([b"a", b"b", b"ab", b"abb"])
    [(0, 1), (2, 1)]
    """
    to_id = {b: i for i, b in enumerate(token_bytes) if b is not None}
    merges = []
    for i, tb in enumerate(token_bytes):
        if tb is None or len(tb) < 2:
            continue
        parts = [bytes([b]) for b in tb]
        while len(parts) > 2:
            best, best_rank = -1, i
            for k in range(len(parts) - 1):
                r = to_id.get(parts[k] + parts[k + 1])
                if r is not None and r < best_rank:
                    best, best_rank = k, r
            if best < 0:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) == 2 and parts[0] in to_id and parts[1] in to_id:
            merges.append((to_id[parts[0]], to_id[parts[1]]))
    return merges


def count_words(texts: Iterable[str], split: Callable[[str], list[str]]) -> dict[bytes, int]:
    """Pre-tokenize every text once and count each distinct pre-token (as UTF-8 bytes).

    >>> count_words(["a b a"], str.split)
    {b'a': 2, b'b': 1}
    """
    counts: dict[str, int] = defaultdict(int)
    for text in texts:
        for piece in split(text):
            counts[piece] += 1
    return {w.encode("utf-8"): c for w, c in counts.items()}


def train_bpe(
    word_counts: dict[bytes, int],
    num_merges: int,
    *,
    min_frequency: int = 2,
    first_id: int = 256,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges from pre-token counts; byte ``b`` is token ``b``, merge k makes
    token ``first_id + k``.

    Not the naive loop: pair counts and the words each pair occurs in are built once; a merge touches only
    the words that hold the pair, and a max-heap with lazy deletion finds the next best pair. Ties go to the
    smallest pair of ids, so training is deterministic.

    >>> train_bpe({b"abab": 3, b"ab": 1}, 2)
    [(97, 98), (256, 256)]
    """
    words = [list(w) for w in word_counts]
    weights = list(word_counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:], strict=False):
            pair_counts[pair] += weights[i]
            where[pair].add(i)
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale entry: the count dropped since it was pushed
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < min_frequency:
            break
        new_id = first_id + len(merges)
        merges.append(pair)
        changed: dict[tuple[int, int], int] = defaultdict(int)
        for i in where.pop(pair):
            w = words[i]
            merged = merge(w, pair, new_id)
            if len(merged) == len(w):
                continue  # stale position: an earlier merge already consumed this occurrence
            for p in zip(w, w[1:], strict=False):
                changed[p] -= weights[i]
            for p in zip(merged, merged[1:], strict=False):
                changed[p] += weights[i]
                if new_id in p:
                    where[p].add(i)
            words[i] = merged
        for p, delta in changed.items():
            if delta:
                pair_counts[p] += delta
                if delta > 0:  # rose: needs a fresh heap entry (drops are caught when popped)
                    heapq.heappush(heap, (-pair_counts[p], p))
        pair_counts.pop(pair, None)
        if progress is not None:
            progress(1)
    return merges


# ------------------------------------------------------------------------------------- character-level BPE
def merge_symbols(ids: list[int], lengths: list[int],
                  pair_table: dict[tuple[int, int], tuple[int, int]]) -> tuple[list[int], list[int]]:
    """BPE merges on a symbol list in O(n log n): a heap of candidate pairs by (rank, position), symbols in a
    linked list. Same result as ``apply_merges`` (lowest rank first, leftmost first); ``lengths`` (what each
    symbol covers, e.g. bytes) add up as symbols merge.

    >>> merge_symbols([104, 105, 33], [1, 1, 1], {(104, 105): (0, 256), (256, 33): (1, 257)})
    ([257], [3])
    """
    n = len(ids)
    ids, lengths = list(ids), list(lengths)
    nxt = list(range(1, n + 1))  # n means "no next symbol"
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for pos in range(n - 1):
        hit = pair_table.get((ids[pos], ids[pos + 1]))
        if hit is not None:
            heap.append((hit[0], pos, hit[1]))
    heapq.heapify(heap)
    while heap:
        rank, pos, new_id = heapq.heappop(heap)
        right = nxt[pos]
        if not alive[pos] or right >= n:
            continue
        hit = pair_table.get((ids[pos], ids[right]))
        if hit is None or hit[1] != new_id:  # stale: one of the two symbols merged elsewhere since
            continue
        ids[pos] = new_id
        lengths[pos] += lengths[right]
        alive[right] = False
        nxt[pos] = nxt[right]
        if nxt[pos] < n:
            prv[nxt[pos]] = pos
        for left, r in ((prv[pos], pos), (pos, nxt[pos])):  # the two pairs the new symbol is part of
            if left >= 0 and r < n:
                hit = pair_table.get((ids[left], ids[r]))
                if hit is not None:
                    heapq.heappush(heap, (hit[0], left, hit[1]))
    keep = [k for k in range(n) if alive[k]]
    return [ids[k] for k in keep], [lengths[k] for k in keep]


class CharBPEModel(BaseModel):
    """Character-level BPE, as SentencePiece-BPE files (Llama 2, Mistral) use it: a word starts as one symbol
    per *character* (a unicode string in the vocabulary), then merges apply by rank.

    A character outside the vocabulary becomes its UTF-8 bytes as ``<0xNN>`` tokens when ``byte_fallback`` is on
    and all of them exist, else ``unk_id`` (consecutive unknowns fused into one when ``fuse_unk``), else it is
    dropped (as HF does). ``continuing_subword_prefix`` / ``end_of_word_suffix`` mark non-first / last chars.

    >>> m = CharBPEModel({"h": 0, "i": 1, "hi": 2, "<0x21>": 3}, [("h", "i")], byte_fallback=True)
    >>> m.encode_word("hi!")
    [2, 3]
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *, unk_id: int | None = None,
                 byte_fallback: bool = False, fuse_unk: bool = False, ignore_merges: bool = False,
                 continuing_subword_prefix: str | None = None, end_of_word_suffix: str | None = None):
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.unk_id = unk_id
        self.byte_fallback = byte_fallback
        self.fuse_unk = fuse_unk
        self.ignore_merges = ignore_merges
        self.prefix = continuing_subword_prefix or ""
        self.suffix = end_of_word_suffix or ""
        self.pair_table: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (a, b) in enumerate(self.merges):  # a pair listed twice keeps its last rank, as HF
            merged = a + b[len(self.prefix):]  # the right part's prefix goes, as HF ("a" + "##b" = "ab")
            if a not in self.vocab or b not in self.vocab or merged not in self.vocab:
                raise KeyError(f"merges[{rank}]: {a!r} + {b!r} needs {a!r}, {b!r} and {merged!r} in the vocabulary")
            self.pair_table[(self.vocab[a], self.vocab[b])] = (rank, self.vocab[merged])
        self.byte_ids = [self.vocab.get(byte_token(b)) for b in range(256)]
        self._strings: dict[int, str] | None = None  # id → token string, built on first use

    def _symbols(self, word: str) -> tuple[list[int], list[int]]:
        """One symbol per char (or its byte tokens, or unk): ``(ids, UTF-8 byte length each covers)``."""
        ids: list[int] = []
        lengths: list[int] = []
        unk_len = 0  # bytes of the unknown run not yet emitted
        last = len(word) - 1
        for k, c in enumerate(word):
            s = (self.prefix if k and self.prefix else "") + c + (self.suffix if k == last else "")
            n_bytes = len(c.encode("utf-8", errors="surrogatepass"))
            i = self.vocab.get(s)
            if i is not None:
                if unk_len:
                    ids.append(self.unk_id)
                    lengths.append(unk_len)
                    unk_len = 0
                ids.append(i)
                lengths.append(n_bytes)
                continue
            if self.byte_fallback:
                data = s.encode("utf-8", errors="surrogatepass")
                fallback = [self.byte_ids[b] for b in data]
                if None not in fallback:
                    ids.extend(fallback)
                    lengths.extend([1] * len(fallback))
                    continue
            if self.unk_id is not None:
                if unk_len and not self.fuse_unk:
                    ids.append(self.unk_id)
                    lengths.append(unk_len)
                    unk_len = 0
                unk_len += n_bytes
        if unk_len:
            ids.append(self.unk_id)
            lengths.append(unk_len)
        return ids, lengths

    def encode_with_lengths(self, word: str) -> tuple[list[int], list[int]]:
        """Ids of one pre-token and the UTF-8 byte length each token covers (for offsets)."""
        if self.ignore_merges:
            whole = self.vocab.get(word)
            if whole is not None:
                return [whole], [len(word.encode("utf-8", errors="surrogatepass"))]
        ids, lengths = self._symbols(word)
        return merge_symbols(ids, lengths, self.pair_table)

    def encode_word(self, word: str) -> list[int]:
        return self.encode_with_lengths(word)[0]

    # ------------------------------------------------------------------------------------ the Model contract
    kind = "bpe"

    def encode(self, word: str) -> list[int]:
        check_encodable(word)
        return self.encode_with_lengths(word)[0]

    def tokenize(self, word: str) -> list[Token]:
        check_encodable(word)
        ids, lengths = self.encode_with_lengths(word)
        spans = byte_token_offsets(word, lengths)
        return list(map(tokens_of, [(i, s, e) for i, (s, e) in zip(ids, spans, strict=True)]))

    def explain(self, word: str) -> dict:
        """``{"merges": [(left, right, merged), ...]}``: the merges applied to ``word``, in order."""
        name = self.id_to_token
        return {"merges": [(name(a), name(b), name(n)) for _, a, b, n in self.explain_word(word)]}

    def id_to_token(self, id: int) -> str | None:
        if self._strings is None:
            self._strings = {i: t for t, i in self.vocab.items()}
        return self._strings.get(id)

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def to_hf(self, vocab: dict[str, int], unk_token: str | None) -> dict:
        return {"type": "BPE", "dropout": None,
                "unk_token": self.id_to_token(self.unk_id) if self.unk_id is not None else None,
                "continuing_subword_prefix": self.prefix or None, "end_of_word_suffix": self.suffix or None,
                "fuse_unk": self.fuse_unk, "byte_fallback": self.byte_fallback, "ignore_merges": self.ignore_merges,
                "vocab": self.vocab, "merges": [list(pair) for pair in self.merges]}

    def lmforge_fields(self, hf_model: dict) -> dict:
        return {k: v for k, v in hf_model.items() if k != "type"}

    def explain_word(self, word: str) -> list[tuple[int, int, int, int]]:
        """The merges applied to one pre-token, in order: ``(rank, left_id, right_id, new_id)``."""
        ids, _ = self._symbols(word)
        steps = []
        while len(ids) >= 2:
            best = None
            for pair in zip(ids, ids[1:], strict=False):
                hit = self.pair_table.get(pair)
                if hit is not None and (best is None or hit[0] < best[1][0]):
                    best = (pair, hit)
            if best is None:
                break
            steps.append((best[1][0], best[0][0], best[0][1], best[1][1]))
            ids = merge(ids, best[0], best[1][1])
        return steps


# ------------------------------------------------------------------------------------------------ helpers
def check_encodable(word: str) -> None:
    """Lone surrogates cannot be UTF-8 (nor reach HF): refuse them clearly."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"text holds {word[e.start]!r} (U+{ord(word[e.start]):04X}), a lone surrogate that cannot "
                         "be UTF-8 encoded; expected valid Unicode text") from None


def byte_token_offsets(word: str, byte_lengths: list[int]) -> list[tuple[int, int]]:
    """Char spans of consecutive tokens of ``word`` given their byte lengths; a token that ends inside a
    multi-byte character covers that whole character (as HF does).

    >>> byte_token_offsets("héllo", [1, 2, 3])
    [(0, 1), (1, 2), (2, 5)]
    """
    if len(word) == sum(byte_lengths):  # ASCII: bytes are chars
        out, pos = [], 0
        for n in byte_lengths:
            out.append((pos, pos + n))
            pos += n
        return out
    char_of_byte = []
    for ci, c in enumerate(word):
        char_of_byte.extend([ci] * len(c.encode("utf-8", errors="surrogatepass")))
    out, pos = [], 0
    for n in byte_lengths:
        if n == 0 or pos >= len(char_of_byte):
            out.append((len(word), len(word)))
            continue
        out.append((char_of_byte[pos], char_of_byte[min(pos + n, len(char_of_byte)) - 1] + 1))
        pos += n
    return out
