"""WordPiece, the BERT tokenizer: normalise, split into words, then cut each word greedily into vocab pieces.

The pipeline, exactly as Hugging Face ``tokenizers`` runs it for BERT (``BertNormalizer`` → ``BertPreTokenizer`` →
``WordPiece`` model), so that ids and char offsets are identical to ``BertTokenizerFast``:

1. normalise (``basic_tokenize``): drop control characters, turn whitespace into spaces, put spaces around CJK
   ideographs, strip accents (NFD, then drop non-spacing marks), lower-case — in that order;
2. pre-tokenize (also ``basic_tokenize``): split on whitespace and isolate every punctuation character;
3. cut each word (``WordPiece.tokenize_word``): greedy longest-match-first from the left; pieces after the first
   carry the ``##`` prefix; a word that cannot be covered (or is longer than 100 chars) becomes one ``[UNK]``.

``train_wordpiece`` learns a vocabulary the way HF's ``WordPieceTrainer`` does (a BPE merge learner over
characters whose non-initial forms carry ``##``), and ``decode_wordpiece`` is HF's WordPiece decoder.

This module imports no torch.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping

from lmforge.errors import ConfigError, InputError
from lmforge.tokenizers.bert_normalizer import (  # noqa: F401 - re-exported: the public spelling of these names
    basic_tokenize,
    basic_tokenize_aligned,
    basic_words,
    is_bert_punctuation,
    is_cjk_ideograph,
    normalised_words,
)
from lmforge.tokenizers.decoders import WordPieceDecoder, decode_wordpiece  # noqa: F401 - decode_wordpiece re-exported
from lmforge.tokenizers.model import BaseModel, Token, tokens_of


class WordPieceModel(BaseModel):
    """The WordPiece model: greedy longest-match-first cutting of one word into vocabulary pieces.

    >>> wp = WordPieceModel({"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "aff": 4})
    >>> wp.tokenize_word("unaffable")
    [('un', 0, 2), ('##aff', 2, 5), ('##able', 5, 9)]
    >>> wp.tokenize_word("xyz")
    [('[UNK]', 0, 3)]
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
    ) -> None:
        if not vocab:
            raise ConfigError("WordPiece vocab: is empty; expected a mapping token -> id")
        self.vocab: dict[str, int] = dict(vocab)
        self.unk_token = unk_token
        self.continuing_subword_prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        p = len(continuing_subword_prefix)
        # Continuation pieces keyed WITHOUT their prefix: the inner loop looks up word[start:end] directly
        # instead of building '##' + substring for every candidate.
        self._continuations = {tok[p:]: i for tok, i in self.vocab.items() if tok.startswith(continuing_subword_prefix)}
        # No piece is longer than these, so the longest-match search starts there instead of at the word's end
        # (turns the O(n^2) slicing of long words into O(n * max_len)).
        self._max_initial = max(len(t) for t in self.vocab)
        self._max_continuation = max((len(t) for t in self._continuations), default=0)
        self._cache: dict[str, list[tuple[str, int, int]]] = {}
        self._ids_cache: dict[str, list[int]] = {}
        self._strings: dict[int, str] | None = None  # id → token, built on first use

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={len(self.vocab)}, unk_token={self.unk_token!r})"

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def _unk(self, word: str) -> list[tuple[str, int, int]]:
        if self.unk_token not in self.vocab:
            raise InputError(
                f"WordPiece: the word {word[:40]!r} cannot be covered and the unk_token {self.unk_token!r} "
                "is not in the vocab"
            )
        return [(self.unk_token, 0, len(word))]

    def tokenize_word(self, word: str) -> list[tuple[str, int, int]]:
        """Cut one (normalised) word into pieces with (start, end) char offsets inside the word.

        The result is memoised: natural text repeats its words, so most words are cut once.
        """
        pieces = self._cache.get(word)
        if pieces is not None:
            return pieces
        pieces = self._tokenize_word(word)
        if len(self._cache) >= 200_000:
            self._cache.clear()  # bound memory on huge corpora; recomputing is cheap
        self._cache[word] = pieces
        return pieces

    def _tokenize_word(self, word: str) -> list[tuple[str, int, int]]:
        n = len(word)
        if n > self.max_input_chars_per_word:
            return self._unk(word)
        vocab, continuations = self.vocab, self._continuations
        prefix = self.continuing_subword_prefix
        pieces: list[tuple[str, int, int]] = []
        start = 0
        while start < n:
            if start == 0:
                end = min(n, self._max_initial)
                while end > 0 and word[:end] not in vocab:
                    end -= 1
                if end == 0:
                    return self._unk(word)
                pieces.append((word[:end], 0, end))
            else:
                end = min(n, start + self._max_continuation)
                while end > start and word[start:end] not in continuations:
                    end -= 1
                if end == start:
                    return self._unk(word)
                pieces.append((prefix + word[start:end], start, end))
            start = end
        return pieces

    def explain_word(self, word: str) -> dict:
        """How the greedy search cut ``word``: every candidate tried at every position, longest first.

        >>> WordPieceModel({"[UNK]": 0, "a": 1, "ab": 2, "##c": 3}).explain_word("abc")["steps"]
        [{'start': 0, 'tried': ['abc', 'ab'], 'matched': 'ab'}, {'start': 2, 'tried': ['##c'], 'matched': '##c'}]
        """
        prefix = self.continuing_subword_prefix
        steps = []
        n = len(word)
        unk_reason = None
        if n > self.max_input_chars_per_word:
            unk_reason = f"longer than max_input_chars_per_word={self.max_input_chars_per_word}"
        start = 0
        while unk_reason is None and start < n:
            bound = self._max_initial if start == 0 else self._max_continuation
            step = {"start": start, "tried": [], "matched": None}
            for end in range(min(n, start + bound), start, -1):
                candidate = word[start:end] if start == 0 else prefix + word[start:end]
                step["tried"].append(candidate)
                if candidate in self.vocab:
                    step["matched"] = candidate
                    break
            steps.append(step)
            if step["matched"] is None:
                unk_reason = f"no vocab piece matches at char {start}"
            else:
                start = end
        pieces = self.tokenize_word(word)
        return {"word": word, "pieces": [p for p, _, _ in pieces], "offsets": [(s, e) for _, s, e in pieces],
                "steps": steps, "unk": unk_reason}

    def _word_ids(self, word: str) -> list[int]:
        vocab = self.vocab
        ids = [vocab[piece] for piece, _, _ in self.tokenize_word(word)]
        if len(self._ids_cache) >= 200_000:
            self._ids_cache.clear()
        self._ids_cache[word] = ids
        return ids

    # ------------------------------------------------------------------------------------ the Model contract
    kind = "wordpiece"

    @property
    def unk_id(self) -> int | None:
        return self.vocab.get(self.unk_token)

    def encode(self, word: str) -> list[int]:
        """Ids of one (normalised) word, memoised.

        >>> WordPieceModel({"[UNK]": 0, "un": 1, "##able": 2}).encode("unable")
        [1, 2]
        """
        ids = self._ids_cache.get(word)
        return ids if ids is not None else self._word_ids(word)

    def tokenize(self, word: str) -> list[Token]:
        vocab = self.vocab
        return list(map(tokens_of, [(vocab[p], s, e) for p, s, e in self.tokenize_word(word)]))

    def explain(self, word: str) -> dict:
        """``{"merges": [], "steps": explain_word(word)}``: the greedy search's candidates."""
        return {"merges": [], "steps": self.explain_word(word)}

    def id_to_token(self, id: int) -> str | None:
        if self._strings is None:
            self._strings = {i: t for t, i in self.vocab.items()}
        return self._strings.get(id)

    def default_decoder(self):
        return WordPieceDecoder(self.continuing_subword_prefix, cleanup=True)

    def to_hf(self, vocab: dict[str, int], unk_token: str | None) -> dict:
        return {"type": "WordPiece", "unk_token": self.unk_token,
                "continuing_subword_prefix": self.continuing_subword_prefix,
                "max_input_chars_per_word": self.max_input_chars_per_word, "vocab": vocab}

    def lmforge_fields(self, hf_model: dict) -> dict:
        return {k: hf_model[k] for k in ("unk_token", "continuing_subword_prefix", "max_input_chars_per_word")}

    def clear_cache(self) -> None:
        self._cache.clear()
        self._ids_cache.clear()


class WordPiece(WordPieceModel):
    """BERT's whole pipeline over one vocabulary, for text in one call: ``tokenize`` / ``encode`` run BERT's
    normaliser + pre-tokenizer (``bert_normalizer``'s functions, which the ``BertPreTokenizer`` stage runs), then
    this model on each word — the same stages a ``Tokenizer`` runs, without special tokens.

    Not a ``Model`` itself (its ``tokenize`` / ``encode`` take text, not one word): a ``Tokenizer`` holds the
    ``WordPieceModel`` and the stages.

    >>> wp = WordPiece({"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "aff": 4})
    >>> wp.tokenize_word("unaffable")
    [('un', 0, 2), ('##aff', 2, 5), ('##able', 5, 9)]
    >>> wp.tokenize_word("xyz")
    [('[UNK]', 0, 3)]
    """

    def tokenize(
        self,
        text: str,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        clean_text: bool = True,
    ) -> list[tuple[str, int, int]]:
        """Normalise, split and cut ``text``: pieces with (start, end) char offsets into the ORIGINAL text.

        No special tokens are added (the ``Tokenizer`` adds ``[CLS] … [SEP]``).

        >>> WordPiece({"[UNK]": 0, "hello": 1, ",": 2, "wo": 3, "##rld": 4}).tokenize("Hello, World")
        [('hello', 0, 5), (',', 5, 6), ('wo', 7, 9), ('##rld', 9, 12)]
        """
        out: list[tuple[str, int, int]] = []
        cache = self._cache
        # the BertPreTokenizer stage's words, called directly: per-line calls make each extra layer count
        for word, first, pos in normalised_words(text, lowercase, strip_accents, tokenize_chinese_chars, clean_text):
            pieces = cache.get(word) or self.tokenize_word(word)
            if pos is None:
                # The word's chars are the original chars one to one, so offsets just shift.
                if len(pieces) == 1:
                    out.append((pieces[0][0], first, first + len(word)))
                else:
                    out.extend([(piece, first + s, first + e) for piece, s, e in pieces])
            else:
                out.extend([(piece, pos[s], pos[e - 1] + 1) for piece, s, e in pieces])
        return out

    def encode(
        self,
        text: str,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        clean_text: bool = True,
    ) -> list[int]:
        """Ids of ``tokenize(text)`` (no special tokens); each distinct word's ids are computed once.

        >>> WordPiece({"[UNK]": 0, "hi": 1, "!": 2}).encode("Hi!?")
        [1, 2, 0]
        """
        ids: list[int] = []
        cache, word_ids = self._ids_cache, self._word_ids
        # the BertPreTokenizer stage's split, called directly: per-line calls make each extra layer count
        for word in basic_words(text, lowercase=lowercase, strip_accents=strip_accents,
                                tokenize_chinese_chars=tokenize_chinese_chars, clean_text=clean_text):
            cached = cache.get(word)
            ids.extend(cached if cached is not None else word_ids(word))
        return ids


def train_wordpiece(
    word_counts: Mapping[str, int],
    *,
    vocab_size: int,
    min_frequency: int = 2,
    special_tokens: Iterable[str] = (),
    limit_alphabet: int | None = None,
    continuing_subword_prefix: str = "##",
    show_progress: bool = False,
) -> dict[str, int]:
    """Learn a WordPiece vocab from pre-tokenized word counts, as HF's ``WordPieceTrainer`` does.

    Vocab order: special tokens, then the alphabet (single chars, by code point), then their ``##`` forms (by
    code point), then one piece per merge. Merges are BPE's: repeatedly join the most frequent adjacent pair of
    pieces (ties → the pair with the smallest ids, so training is deterministic), until ``vocab_size`` pieces
    exist or the best pair occurs fewer than ``min_frequency`` times. Pair counts are updated incrementally —
    only the words containing the merged pair are touched — and the best pair comes from a lazy max-heap.

    >>> v = train_wordpiece({"hug": 10, "pug": 5, "hugs": 5}, vocab_size=20, special_tokens=["[UNK]"])
    >>> list(v)[:6], "hug" in v
    (['[UNK]', 'g', 'h', 'p', 's', 'u'], True)
    """
    special_tokens = list(special_tokens)
    if vocab_size < 1:
        raise ConfigError(f"vocab_size: must be positive, got {vocab_size}")
    if limit_alphabet is not None and limit_alphabet < 0:
        raise ConfigError(f"limit_alphabet: must be >= 0 or None, got {limit_alphabet}")
    for word, count in word_counts.items():
        if not isinstance(word, str) or not isinstance(count, int) or count < 0:
            raise InputError(f"word_counts: expected str -> non-negative int, got {word!r} -> {count!r}")
    prefix = continuing_subword_prefix

    id_to_token: list[str] = []
    token_to_id: dict[str, int] = {}

    def add(token: str) -> int:
        if token not in token_to_id:
            token_to_id[token] = len(id_to_token)
            id_to_token.append(token)
        return token_to_id[token]

    for tok in special_tokens:
        add(tok)

    # The alphabet: every char, weighted by word counts; with limit_alphabet only the most frequent survive
    # (ties: the smaller code point survives). Added in code point order.
    char_counts: dict[str, int] = defaultdict(int)
    for word, count in word_counts.items():
        for ch in word:
            char_counts[ch] += count
    alphabet = sorted(char_counts, key=lambda c: (-char_counts[c], ord(c)))
    if limit_alphabet is not None:
        alphabet = alphabet[:limit_alphabet]
    alphabet.sort()
    for ch in alphabet:
        add(ch)
    allowed = set(alphabet)
    # '##x' forms for chars that occur inside a word (chars outside the alphabet are skipped, as in HF).
    continuation_chars = sorted({ch for word in word_counts for ch in word[1:] if ch in allowed})
    for ch in continuation_chars:
        add(prefix + ch)

    # Every distinct word as a list of piece ids.
    words: list[list[int]] = []
    counts: list[int] = []
    for word, count in sorted(word_counts.items()):
        symbols = [
            token_to_id[ch if k == 0 else prefix + ch] for k, ch in enumerate(word) if ch in allowed
        ]
        # HF adds the '##' form only for non-first chars; a first char dropped by limit_alphabet leaves a word
        # whose first kept piece is a '##' form, which is what HF does too.
        if symbols and count > 0:
            words.append(symbols)
            counts.append(count)

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (symbols, count) in enumerate(zip(words, counts, strict=True)):
        for pair in zip(symbols, symbols[1:], strict=False):
            pair_counts[pair] += count
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in pair_counts.items() if c > 0]
    heapq.heapify(heap)

    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=max(0, vocab_size - len(id_to_token)), desc="wordpiece merges", unit="merge")

    while len(id_to_token) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if -neg != current:  # stale entry: re-queue with the true count
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        if current < max(1, min_frequency):
            break
        a, b = pair
        piece_b = id_to_token[b]
        if prefix and piece_b.startswith(prefix):
            piece_b = piece_b[len(prefix):]
        new_id = add(id_to_token[a] + piece_b)
        if progress is not None:
            progress.update(1)
        touched: dict[tuple[int, int], int] = defaultdict(int)
        for w in sorted(where.pop(pair, ())):
            _merge_word(words[w], a, b, new_id, counts[w], w, touched, where)
        pair_counts.pop(pair, None)
        for p, delta in touched.items():
            if delta:
                pair_counts[p] += delta
                if delta > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
    if progress is not None:
        progress.close()
    return dict(token_to_id)


def _merge_word(
    symbols: list[int],
    a: int,
    b: int,
    new_id: int,
    count: int,
    w: int,
    touched: dict[tuple[int, int], int],
    where: dict[tuple[int, int], set[int]],
) -> None:
    """Replace every (a, b) in ``symbols`` (left to right, in place) by ``new_id``; record pair-count changes.

    The neighbours' pairs are unlinked and relinked one merge at a time, so 'a b a b' → 'N N' nets out right:
    (b, a) -1, (N, a) +1 -1, (N, N) +1.

    >>> syms, t, wh = [1, 2, 1, 2], defaultdict(int), defaultdict(set)
    >>> _merge_word(syms, 1, 2, 9, 1, 0, t, wh); syms, {p: d for p, d in t.items() if d}
    ([9, 9], {(2, 1): -1, (9, 9): 1})
    """
    i = 0
    while i < len(symbols) - 1:
        if symbols[i] == a and symbols[i + 1] == b:
            if i > 0:
                left = symbols[i - 1]
                touched[(left, a)] -= count
                touched[(left, new_id)] += count
                where[(left, new_id)].add(w)
            symbols[i : i + 2] = [new_id]
            if i < len(symbols) - 1:
                right = symbols[i + 1]
                touched[(b, right)] -= count
                touched[(new_id, right)] += count
                where[(new_id, right)].add(w)
        i += 1
