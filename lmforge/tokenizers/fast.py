"""Fast paths: the BPE trainer's merge loop and per-word BPE encoding compiled with numba, and bulk encoding
over several processes.

The algorithms are exactly the readable references in ``bpe.py`` (``train_bpe``, ``apply_merges``); only the
data structures change: a pair ``(a, b)`` becomes one int64 key ``a << 32 | b`` in an open-addressing hash
table held in numpy arrays, the words a pair occurs in are a linked list in a growing pool, and the best-pair
queue is a binary heap in arrays. Tests check ids and merges are identical to the references.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a core dependency; keep the pure-Python path working
    numba = None

_EMPTY = -1
_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing multiplier


def _njit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


# ---------------------------------------------------------------------------------------- hash table of pairs
@_njit
def _slot(keys, key):
    """Index where ``key`` lives or would be inserted (linear probing), in a table of power-of-two size."""
    mask = keys.shape[0] - 1
    h = (np.uint64(key) * np.uint64(_GOLDEN)) >> np.uint64(32)
    i = np.int64(h) & mask
    while keys[i] != _EMPTY and keys[i] != key:
        i = (i + 1) & mask
    return i


@_njit
def _build_table(keys_in, vals_in):
    """A lookup table ``key → value`` with load factor ≤ 1/2."""
    cap = 16
    while cap < 2 * keys_in.shape[0] + 16:
        cap *= 2
    keys = np.full(cap, _EMPTY, np.int64)
    vals = np.zeros(cap, np.int64)
    for k in range(keys_in.shape[0]):
        i = _slot(keys, keys_in[k])
        keys[i] = keys_in[k]
        vals[i] = vals_in[k]
    return keys, vals


# ------------------------------------------------------------------------------------------------ encoding
@_njit
def _merge_in_place(buf, n, keys, vals):
    """BPE on the ids ``buf[:n]``: apply the lowest-ranked merge present, all its occurrences, until none is left;
    returns the new length. ``keys``/``vals`` is the pair table (pair -> rank << 32 | merged id)."""
    while n >= 2:
        best_rank = np.int64(1) << 62
        best_a = -1
        best_b = -1
        best_new = -1
        for i in range(n - 1):
            key = (buf[i] << 32) | buf[i + 1]
            j = _slot(keys, key)
            if keys[j] == key:
                rank = vals[j] >> 32
                if rank < best_rank:
                    best_rank = rank
                    best_a = buf[i]
                    best_b = buf[i + 1]
                    best_new = vals[j] & 0xFFFFFFFF
        if best_a < 0:
            break
        m = 0
        i = 0
        while i < n:
            if i + 1 < n and buf[i] == best_a and buf[i + 1] == best_b:
                buf[m] = best_new
                i += 2
            else:
                buf[m] = buf[i]
                i += 1
            m += 1
        n = m
    return n


@_njit
def _encode_words(data, starts, byte_ids, keys, vals):
    """BPE-encode many words at once. ``data[starts[w]:starts[w+1]]`` are word w's bytes; ``vals`` hold
    ``rank << 32 | new_id``. Returns the ids of all words back to back and where each word's ids start.

    Same rule as ``bpe.apply_merges``: take the lowest-rank adjacent pair (leftmost on ties), merge all its
    occurrences left to right, repeat."""
    n_words = starts.shape[0] - 1
    out = np.empty(data.shape[0], np.int64)
    out_starts = np.empty(n_words + 1, np.int64)
    buf = np.empty(max(1, data.shape[0]), np.int64)
    pos = 0
    for w in range(n_words):
        out_starts[w] = pos
        n = 0
        for k in range(starts[w], starts[w + 1]):
            buf[n] = byte_ids[data[k]]
            n += 1
        n = _merge_in_place(buf, n, keys, vals)
        for i in range(n):
            out[pos] = buf[i]
            pos += 1
    out_starts[n_words] = pos
    return out[:pos], out_starts


class FastBPE:
    """numba tables for one ``BPEModel`` (read through its public ``pair_table``, ``byte_ids``,
    ``ignore_merges``): encodes a batch of pre-tokens in one compiled call."""

    def __init__(self, model):
        table = model.pair_table
        keys = np.fromiter(((a << 32) | b for a, b in table), np.int64, len(table))
        vals = np.fromiter(((r << 32) | n for r, n in table.values()), np.int64, len(table))
        self.keys, self.vals = _build_table(keys, vals)
        self.byte_ids = np.array(model.byte_ids, np.int64)
        # bytes missing from the vocabulary (unk / dropped) and ignore_merges are left to the reference
        self.usable = bool((self.byte_ids >= 0).all()) and not model.ignore_merges
        self.piece_cache = None  # built on first use of the compiled GPT-2 path

    def encode_pieces(self, pieces: list[str]) -> list[list[int]]:
        """``[model.encode_word(p.encode()) for p in pieces]``, computed in one compiled call."""
        encoded = [p.encode("utf-8") for p in pieces]
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        starts = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        data = np.frombuffer(b"".join(encoded), np.uint8)
        ids, out_starts = _encode_words(data, starts, self.byte_ids, self.keys, self.vals)
        flat = ids.tolist()
        bounds = out_starts.tolist()
        return [flat[bounds[k]:bounds[k + 1]] for k in range(len(encoded))]


# ------------------------------------------------------- GPT-2 / cl100k pre-tokenizers + piece cache in numba
_OTHER, _LETTER, _NUMBER, _SPACE = 0, 1, 2, 3


def char_classes() -> np.ndarray:
    r"""Class of every code point for the GPT-2 pattern (letter ``\p{L}``, number ``\p{N}``, space ``\s``,
    other), taken from the ``regex`` module itself so the compiled splitter agrees with the reference regex.

    >>> int(char_classes()[ord("a")]), int(char_classes()[ord("7")]), int(char_classes()[ord(" ")])
    (1, 2, 3)
    """
    global _CLASSES
    if _CLASSES is None:
        import regex

        every = "".join(map(chr, range(0x110000)))
        table = np.zeros(0x110000, np.uint8)
        for cls, pattern in ((_LETTER, r"\p{L}+"), (_NUMBER, r"\p{N}+"), (_SPACE, r"\s+")):
            for m in regex.finditer(pattern, every):
                table[m.start():m.end()] = cls
        _CLASSES = table
    return _CLASSES


_CLASSES = None
_CREATE_LOCK = threading.Lock()


@_njit
def _code_point(data, p):
    """(code point, byte length) of the UTF-8 character at byte ``p`` (``data`` is valid UTF-8)."""
    b0 = np.int64(data[p])
    if b0 < 0x80:
        return b0, 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.int64(data[p + 1]) & 0x3F), 2
    if b0 < 0xF0:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[p + 1]) & 0x3F) << 6) | (np.int64(data[p + 2]) & 0x3F), 3
    return (((b0 & 0x07) << 18) | ((np.int64(data[p + 1]) & 0x3F) << 12) | ((np.int64(data[p + 2]) & 0x3F) << 6)
            | (np.int64(data[p + 3]) & 0x3F)), 4


@_njit
def _class_run_end(data, e, n, classes, k):
    """End of the run of chars of class ``k`` that starts at byte ``e`` (``e`` itself if none)."""
    while e < n:
        c, w = _code_point(data, e)
        if classes[c] != k:
            break
        e += w
    return e


@_njit
def _gpt2_piece_end(data, p, n, classes):
    r"""End (byte index) of the GPT-2 pattern's match at ``p``:
    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ — alternatives in that order."""
    c, width = _code_point(data, p)
    if c == 39 and p + 1 < n:  # contractions, case-sensitive as in GPT-2
        c1 = data[p + 1]
        if c1 == 115 or c1 == 116 or c1 == 109 or c1 == 100:  # s t m d
            return p + 2
        if p + 2 < n:
            c2 = data[p + 2]
            if (c1 == 114 and c2 == 101) or (c1 == 118 and c2 == 101) or (c1 == 108 and c2 == 108):  # re ve ll
                return p + 3
    k = classes[c]
    q = p
    if c == 32 and p + 1 < n:  # " ?" before a letter / number / other run
        c_next, w_next = _code_point(data, p + 1)
        k_next = classes[c_next]
        if k_next != _SPACE:
            k = k_next
            q = p + 1
    if k != _SPACE:
        return _class_run_end(data, q, n, classes, k)
    e = p
    last = p
    while e < n:  # a whitespace run; unless it reaches the end, leave its last char to the next word
        c2, w2 = _code_point(data, e)
        if classes[c2] != _SPACE:
            break
        last = e
        e += w2
    if e == n or last == p:
        return e
    return last


@_njit
def _is_contraction_letter(c, letter):
    """``c`` matches ``letter`` case-insensitively as the ``regex`` module does ('ſ' folds to 's')."""
    return c == letter or c == letter - 32 or (letter == 115 and c == 0x17F)


@_njit
def _cl100k_piece_end(data, p, n, classes):
    r"""End (byte index) of the cl100k pattern's match at ``p``: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|
    \p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+ — alternatives in that order."""
    c, width = _code_point(data, p)
    if c == 39 and p + 1 < n:  # contractions, case-insensitive
        c1, w1 = _code_point(data, p + 1)
        if (_is_contraction_letter(c1, 115) or _is_contraction_letter(c1, 100) or _is_contraction_letter(c1, 109)
                or _is_contraction_letter(c1, 116)):
            return p + 1 + w1
        if p + 1 + w1 < n:
            c2, w2 = _code_point(data, p + 1 + w1)
            if ((_is_contraction_letter(c1, 108) and _is_contraction_letter(c2, 108))
                    or (_is_contraction_letter(c1, 118) and _is_contraction_letter(c2, 101))
                    or (_is_contraction_letter(c1, 114) and _is_contraction_letter(c2, 101))):
                return p + 1 + w1 + w2
    k = classes[c]
    if k == _LETTER or (k != _NUMBER and c != 13 and c != 10 and p + width < n
                        and classes[_code_point(data, p + width)[0]] == _LETTER):
        e = p if k == _LETTER else p + width  # an optional non-letter/number/newline char, then letters
        return _class_run_end(data, e, n, classes, _LETTER)
    if k == _NUMBER:  # numbers in groups of at most three
        e = p
        taken = 0
        while e < n and taken < 3:
            c2, w2 = _code_point(data, e)
            if classes[c2] != _NUMBER:
                break
            e += w2
            taken += 1
        return e
    q = p
    if c == 32 and p + 1 < n and classes[_code_point(data, p + 1)[0]] == _OTHER:
        q = p + 1
    if classes[_code_point(data, q)[0]] == _OTHER:  # punctuation run, then any newlines
        e = _class_run_end(data, q, n, classes, _OTHER)
        while e < n and (data[e] == 13 or data[e] == 10):
            e += 1
        return e
    e = p  # whitespace: up to its last newline if it has one, else as GPT-2
    last = p
    last_newline = -1
    while e < n:
        c2, w2 = _code_point(data, e)
        if classes[c2] != _SPACE:
            break
        if c2 == 13 or c2 == 10:
            last_newline = e + 1
        last = e
        e += w2
    if last_newline > 0:
        return last_newline
    if e == n or last == p:
        return e
    return last


@_njit
def _piece_end(data, p, n, classes, mode):
    if mode == 1:
        return _cl100k_piece_end(data, p, n, classes)
    return _gpt2_piece_end(data, p, n, classes)


@_njit
def _bytes_hash(data, s, e):
    h = np.uint64(14695981039346656037)  # FNV-1a
    for i in range(s, e):
        h = (h ^ np.uint64(data[i])) * np.uint64(1099511628211)
    return h


@_njit
def _cache_slot(c_off, c_len, c_hash, kpool, h, data, s, e):
    mask = c_off.shape[0] - 1
    i = np.int64((h * np.uint64(_GOLDEN)) >> np.uint64(32)) & mask
    n = e - s
    while c_off[i] != -1:
        if c_hash[i] == h and c_len[i] == n:
            same = True
            base = c_off[i]
            for t in range(n):
                if kpool[base + t] != data[s + t]:
                    same = False
                    break
            if same:
                return i
        i = (i + 1) & mask
    return i


@_njit
def _grow_cache(c_off, c_len, c_hash, c_ids, c_nids):
    cap = c_off.shape[0] * 2
    n_off = np.full(cap, -1, np.int64)
    n_len = np.zeros(cap, np.int64)
    n_hash = np.zeros(cap, np.uint64)
    n_ids = np.zeros(cap, np.int64)
    n_nids = np.zeros(cap, np.int64)
    mask = cap - 1
    for i in range(c_off.shape[0]):
        if c_off[i] != -1:
            j = np.int64((c_hash[i] * np.uint64(_GOLDEN)) >> np.uint64(32)) & mask
            while n_off[j] != -1:
                j = (j + 1) & mask
            n_off[j], n_len[j], n_hash[j], n_ids[j], n_nids[j] = c_off[i], c_len[i], c_hash[i], c_ids[i], c_nids[i]
    return n_off, n_len, n_hash, n_ids, n_nids


@_njit
def _grow(arr, need):
    if need <= arr.shape[0]:
        return arr
    size = arr.shape[0] * 2
    while size < need:
        size *= 2
    out = np.empty(size, arr.dtype)
    out[: arr.shape[0]] = arr
    return out


@_njit
def _encode_text_compiled(data, classes, mode, byte_ids, keys, vals, c_off, c_len, c_hash, c_ids, c_nids, kpool,
                          ipool, counters):
    """Split UTF-8 ``data`` with the GPT-2 (``mode`` 0) or cl100k (1) pattern and BPE-encode each piece,
    memoising pieces in a hash table (pieces' bytes in ``kpool``, their ids in ``ipool``). Returns the ids and
    the (regrown) cache."""
    n = data.shape[0]
    out = np.empty(n, np.int64)
    n_out = 0
    buf = np.empty(max(1, n), np.int64)
    used, k_used, i_used = counters[0], counters[1], counters[2]
    p = 0
    while p < n:
        e = _piece_end(data, p, n, classes, mode)
        h = _bytes_hash(data, p, e)
        slot = _cache_slot(c_off, c_len, c_hash, kpool, h, data, p, e)
        if c_off[slot] == -1:
            m = 0  # BPE on the piece, as _encode_words
            for t in range(p, e):
                buf[m] = byte_ids[data[t]]
                m += 1
            m = _merge_in_place(buf, m, keys, vals)
            kpool = _grow(kpool, k_used + (e - p))
            ipool = _grow(ipool, i_used + m)
            kpool[k_used:k_used + (e - p)] = data[p:e]
            ipool[i_used:i_used + m] = buf[:m]
            c_off[slot], c_len[slot], c_hash[slot], c_ids[slot], c_nids[slot] = k_used, e - p, h, i_used, m
            k_used += e - p
            i_used += m
            used += 1
            if 2 * used > c_off.shape[0]:
                c_off, c_len, c_hash, c_ids, c_nids = _grow_cache(c_off, c_len, c_hash, c_ids, c_nids)
                slot = _cache_slot(c_off, c_len, c_hash, kpool, h, data, p, e)
        base = c_ids[slot]
        for t in range(c_nids[slot]):
            out[n_out] = ipool[base + t]
            n_out += 1
        p = e
    counters[0], counters[1], counters[2] = used, k_used, i_used
    return out[:n_out], c_off, c_len, c_hash, c_ids, c_nids, kpool, ipool


@_njit
def _count_text_compiled(data, classes, mode, c_off, c_len, c_hash, c_cnt, kpool, counters):
    """Count the GPT-2 (``mode`` 0) or cl100k (1) pre-tokens of UTF-8 ``data`` into a hash table (bytes in
    ``kpool``)."""
    n = data.shape[0]
    used, k_used = counters[0], counters[1]
    p = 0
    while p < n:
        e = _piece_end(data, p, n, classes, mode)
        h = _bytes_hash(data, p, e)
        slot = _cache_slot(c_off, c_len, c_hash, kpool, h, data, p, e)
        if c_off[slot] == -1:
            kpool = _grow(kpool, k_used + (e - p))
            kpool[k_used:k_used + (e - p)] = data[p:e]
            c_off[slot], c_len[slot], c_hash[slot], c_cnt[slot] = k_used, e - p, h, 0
            k_used += e - p
            used += 1
            if 2 * used > c_off.shape[0]:
                c_off, c_len, c_hash, c_cnt, _unused = _grow_cache(c_off, c_len, c_hash, c_cnt, c_cnt)
                slot = _cache_slot(c_off, c_len, c_hash, kpool, h, data, p, e)
        c_cnt[slot] += 1
        p = e
    counters[0], counters[1] = used, k_used
    return c_off, c_len, c_hash, c_cnt, kpool


def compiled_split_mode(pattern: str) -> int | None:
    """0 for GPT-2's pattern, 1 for cl100k's, None for patterns only the regex path knows."""
    from lmforge.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN

    return {GPT2_PATTERN: 0, CL100K_PATTERN: 1}.get(pattern)


def count_pretokens_compiled(texts, pattern: str, add_prefix_space: bool = False) -> dict[bytes, int] | None:
    """Distinct pre-tokens of all texts (GPT-2 or cl100k pattern) with their counts, split and counted in numba,
    in first-seen order, as ``train.count_pretokens``. None when numba or the pattern is not available."""
    mode = compiled_split_mode(pattern)
    if numba is None or mode is None:
        return None
    from lmforge.errors import InputError

    cap = 1 << 16
    c_off, c_len, c_hash, c_cnt = (np.full(cap, -1, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.uint64),
                                   np.zeros(cap, np.int64))
    kpool = np.empty(1 << 20, np.uint8)
    counters = np.zeros(2, np.int64)
    classes = char_classes()
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{k}]: expected a str, got {type(text).__name__}")
        if add_prefix_space and not text.startswith(" "):
            text = " " + text
        try:
            data = np.frombuffer(text.encode("utf-8"), np.uint8)
        except UnicodeEncodeError as e:
            raise InputError(f"training text holds {text[e.start]!r} (U+{ord(text[e.start]):04X}), a lone surrogate "
                             "that cannot be UTF-8 encoded; expected valid Unicode") from None
        c_off, c_len, c_hash, c_cnt, kpool = _count_text_compiled(data, classes, mode, c_off, c_len, c_hash, c_cnt,
                                                                  kpool, counters)
    live = np.nonzero(c_off != -1)[0]
    live = live[np.argsort(c_off[live])]  # first-seen order, like the reference
    pool = kpool[: int(counters[1])].tobytes()
    return {pool[o:o + n]: c for o, n, c in zip(c_off[live].tolist(), c_len[live].tolist(), c_cnt[live].tolist(),
                                                strict=True)}


class PieceCache:
    """The compiled path's memo of pre-token bytes → ids, kept between calls (reset when it grows too big).
    The compiled code runs without the GIL, so a lock keeps threads sharing a tokenizer from racing on it."""

    MAX_BYTES = 64 << 20

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def reset(self) -> None:
        cap = 1 << 16
        self.tables = (np.full(cap, -1, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.uint64),
                       np.zeros(cap, np.int64), np.zeros(cap, np.int64))
        self.kpool = np.empty(1 << 20, np.uint8)
        self.ipool = np.empty(1 << 18, np.int64)
        self.counters = np.zeros(3, np.int64)

    def encode(self, fast: FastBPE, data: np.ndarray, mode: int) -> np.ndarray:
        classes = char_classes()
        with self.lock:
            if self.counters[1] > self.MAX_BYTES:
                self.reset()
            ids, *tables, self.kpool, self.ipool = _encode_text_compiled(
                data, classes, mode, fast.byte_ids, fast.keys, fast.vals, *self.tables, self.kpool, self.ipool,
                self.counters)
            self.tables = tuple(tables)
        return ids


def encode_text(fast: FastBPE, text: str, mode: int) -> list[int] | None:
    """Split ``text`` with the compiled GPT-2 (``mode`` 0) / cl100k (1) splitter and BPE-encode every piece,
    through ``fast``'s memo of pieces; None when ``text`` is not valid UTF-8 (lone surrogates: the reference
    path raises the clear error)."""
    try:
        data = np.frombuffer(text.encode("utf-8"), np.uint8)
    except UnicodeEncodeError:
        return None
    if fast.piece_cache is None:
        with _CREATE_LOCK:
            if fast.piece_cache is None:
                fast.piece_cache = PieceCache()
    return fast.piece_cache.encode(fast, data, mode).tolist()


# ------------------------------------------------------------------------------------------- processes
_WORKER_ENCODE = None


def _worker_init(encode_one) -> None:
    global _WORKER_ENCODE
    _WORKER_ENCODE = encode_one


def _worker_encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rows = [_WORKER_ENCODE(t) for t in texts]
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    flat = np.fromiter(itertools.chain.from_iterable(rows), np.int32, int(lengths.sum()))
    return flat, lengths  # numpy arrays pickle far faster than lists of ints


def _chunks(texts: list[str], n: int) -> list[list[str]]:
    """Consecutive chunks of about equal total length (``n`` per worker, so slow ones even out)."""
    total = sum(map(len, texts)) or 1
    target = total / n
    out, cur, size = [], [], 0
    for t in texts:
        cur.append(t)
        size += len(t)
        if size >= target:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def default_workers(texts: list[str]) -> int:
    """One process, or all cores (up to 8) for inputs above ~16 MB on machines with at least 4 cores."""
    cores = os.cpu_count() or 1
    big = sum(map(len, texts)) > 16_000_000 and len(texts) > 1
    return min(cores, 8) if big and cores >= 4 else 1


def encode_in_processes(encode_one, texts: list[str], num_workers: int) -> list[list[int]]:
    """``[encode_one(t) for t in texts]`` over ``num_workers`` processes (``encode_one``: a picklable callable,
    e.g. a tokenizer's bound method; with fork it is shared, not pickled)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    ctx = multiprocessing.get_context(method)
    chunks = _chunks(texts, num_workers * 4)
    rows: list[list[int]] = []
    with ProcessPoolExecutor(num_workers, mp_context=ctx, initializer=_worker_init, initargs=(encode_one,)) as pool:
        for flat, lengths in pool.map(_worker_encode, chunks):
            flat_list = flat.tolist()
            pos = 0
            for n in lengths.tolist():
                rows.append(flat_list[pos:pos + n])
                pos += n
    return rows


# ------------------------------------------------------------------------------------------------- training
# The trainer's pair table: one row per slot so a look-up touches one cache line.
_KEY, _COUNT, _HEAD, _DELTA, _MARK = 0, 1, 2, 3, 4


@_njit
def _tslot(table, key):
    mask = table.shape[0] - 1
    i = np.int64((np.uint64(key) * np.uint64(_GOLDEN)) >> np.uint64(32)) & mask
    while table[i, _KEY] != _EMPTY and table[i, _KEY] != key:
        i = (i + 1) & mask
    return i


@_njit
def _new_table(cap):
    table = np.zeros((cap, 5), np.int64)
    table[:, _KEY] = _EMPTY
    table[:, _HEAD] = -1
    table[:, _MARK] = -1
    return table


@_njit
def _tinsert(table, used, key):
    """Slot of ``key`` (inserted with count 0 if new; the table doubles past half full). Returns
    (table, slot, used)."""
    i = _tslot(table, key)
    if table[i, _KEY] == _EMPTY:
        if 2 * (used + 1) > table.shape[0]:
            bigger = _new_table(2 * table.shape[0])
            for r in range(table.shape[0]):
                if table[r, _KEY] != _EMPTY:
                    bigger[_tslot(bigger, table[r, _KEY])] = table[r]
            table = bigger
            i = _tslot(table, key)
        table[i, _KEY] = key
        used += 1
    return table, i, used


@_njit
def _better(c1, k1, c2, k2):
    """Heap order: higher count first, then the smaller pair (as ``train_bpe``'s ``(-count, pair)``)."""
    return c1 > c2 or (c1 == c2 and k1 < k2)


@_njit
def _heap_push(hc, hk, n, count, key):
    if n == hc.shape[0]:
        hc = _grow(hc, n + 1)
        hk = _grow(hk, n + 1)
    i = n
    hc[i] = count
    hk[i] = key
    while i > 0:
        p = (i - 1) // 2
        if _better(hc[i], hk[i], hc[p], hk[p]):
            hc[i], hc[p] = hc[p], hc[i]
            hk[i], hk[p] = hk[p], hk[i]
            i = p
        else:
            break
    return hc, hk, n + 1


@_njit
def _heap_pop(hc, hk, n):
    count, key = hc[0], hk[0]
    n -= 1
    hc[0], hk[0] = hc[n], hk[n]
    i = 0
    while True:
        left = 2 * i + 1
        best = i
        if left < n and _better(hc[left], hk[left], hc[best], hk[best]):
            best = left
        if left + 1 < n and _better(hc[left + 1], hk[left + 1], hc[best], hk[best]):
            best = left + 1
        if best == i:
            break
        hc[i], hc[best] = hc[best], hc[i]
        hk[i], hk[best] = hk[best], hk[i]
        i = best
    return count, key, n


@_njit
def _train_init(sym, wstart, weight):
    """Pair counts, the words each pair occurs in (a linked list per pair in ``occ``), and the heap."""
    table = _new_table(1 << 16)
    used = 0
    occ_word = np.empty(sym.shape[0] + 16, np.int64)
    occ_next = np.empty(sym.shape[0] + 16, np.int64)
    n_occ = 0
    for w in range(wstart.shape[0] - 1):
        for i in range(wstart[w], wstart[w + 1] - 1):
            table, s, used = _tinsert(table, used, (sym[i] << 32) | sym[i + 1])
            table[s, _COUNT] += weight[w]
            occ_word[n_occ] = w
            occ_next[n_occ] = table[s, _HEAD]
            table[s, _HEAD] = n_occ
            n_occ += 1
    hc = np.empty(used + 16, np.int64)
    hk = np.empty(used + 16, np.int64)
    n_heap = 0
    for s in range(table.shape[0]):
        if table[s, _KEY] != _EMPTY and table[s, _COUNT] > 0:
            hc, hk, n_heap = _heap_push(hc, hk, n_heap, table[s, _COUNT], table[s, _KEY])
    scalars = np.array([used, n_occ, n_heap, 0], np.int64)  # used slots, pool size, heap size, merges done
    return table, occ_word, occ_next, hc, hk, scalars


@_njit
def _bump(table, used, key, d, stamp, touched, n_touched):
    """Add ``d`` to a pair's count, remembering it as touched by this merge. Returns the slot too."""
    table, j, used = _tinsert(table, used, key)
    table[j, _COUNT] += d
    table[j, _DELTA] += d
    if table[j, _MARK] != stamp:
        table[j, _MARK] = stamp
        touched = _grow(touched, n_touched + 1)
        touched[n_touched] = key
        n_touched += 1
    return table, j, used, touched, n_touched


@_njit
def _move_pair(table, used, old_key, new_key, wt, stamp, touched, n_touched, occ_word, occ_next, n_occ, w):
    """A merge turned one occurrence of pair ``old_key`` (in word ``w``, of weight ``wt``) into ``new_key``:
    move the count and link the occurrence into the new pair's list."""
    table, j, used, touched, n_touched = _bump(table, used, old_key, -wt, stamp, touched, n_touched)
    table, j, used, touched, n_touched = _bump(table, used, new_key, wt, stamp, touched, n_touched)
    occ_word = _grow(occ_word, n_occ + 1)
    occ_next = _grow(occ_next, n_occ + 1)
    occ_word[n_occ] = w
    occ_next[n_occ] = table[j, _HEAD]
    table[j, _HEAD] = n_occ
    return table, used, touched, n_touched, occ_word, occ_next, n_occ + 1


@_njit
def _train_steps(sym, wstart, wlen, weight, table, occ_word, occ_next, hc, hk, scalars, merges_out, seen,
                 touched, steps, first_id, min_frequency):
    """Run up to ``steps`` merges of ``bpe.train_bpe``'s loop. Per occurrence only the neighbouring pairs
    change: (prev, a) → (prev, new) and (b, next) → (new, next)."""
    used, n_occ, n_heap, n_merges = scalars[0], scalars[1], scalars[2], scalars[3]
    done = 0
    stopped = 0
    while done < steps and n_merges < merges_out.shape[0]:
        if n_heap == 0:
            stopped = 1
            break
        cnt, pair, n_heap = _heap_pop(hc, hk, n_heap)
        s = _tslot(table, pair)
        current = table[s, _COUNT] if table[s, _KEY] == pair else 0
        if current != cnt:  # stale entry
            if current > 0:
                hc, hk, n_heap = _heap_push(hc, hk, n_heap, current, pair)
            continue
        if cnt < min_frequency:
            stopped = 1
            break
        a = pair >> 32
        b = pair & 0xFFFFFFFF
        new_id = first_id + n_merges
        merges_out[n_merges, 0] = a
        merges_out[n_merges, 1] = b
        n_merges += 1
        stamp = n_merges
        n_touched = 0
        o = table[s, _HEAD]
        table[s, _HEAD] = -1
        while o != -1:
            w = occ_word[o]
            o = occ_next[o]
            if seen[w] == stamp:
                continue
            seen[w] = stamp
            st = wstart[w]
            n = wlen[w]
            wt = weight[w]
            m = 0
            i = 0
            while i < n:
                if i + 1 < n and sym[st + i] == a and sym[st + i + 1] == b:
                    if m > 0:  # left neighbour (already rewritten, so it may be a new token itself)
                        left = sym[st + m - 1]
                        table, used, touched, n_touched, occ_word, occ_next, n_occ = _move_pair(
                            table, used, (left << 32) | a, (left << 32) | new_id, wt, stamp, touched, n_touched,
                            occ_word, occ_next, n_occ, w)
                    if i + 2 < n:  # right neighbour (not yet rewritten)
                        right = sym[st + i + 2]
                        table, used, touched, n_touched, occ_word, occ_next, n_occ = _move_pair(
                            table, used, (b << 32) | right, (new_id << 32) | right, wt, stamp, touched, n_touched,
                            occ_word, occ_next, n_occ, w)
                    sym[st + m] = new_id
                    i += 2
                else:
                    sym[st + m] = sym[st + i]
                    i += 1
                m += 1
            wlen[w] = m
        for t in range(n_touched):
            j = _tslot(table, touched[t])
            if table[j, _DELTA] > 0 and table[j, _COUNT] > 0:
                hc, hk, n_heap = _heap_push(hc, hk, n_heap, table[j, _COUNT], touched[t])
            table[j, _DELTA] = 0
        table[_tslot(table, pair), _COUNT] = 0
        done += 1
    scalars[0], scalars[1], scalars[2], scalars[3] = used, n_occ, n_heap, n_merges
    return table, occ_word, occ_next, hc, hk, touched, stopped


def train_bpe_fast(word_counts: dict[bytes, int], num_merges: int, *, min_frequency: int = 2,
                   progress: Callable[[int], None] | None = None, chunk: int = 256) -> list[tuple[int, int]]:
    """``bpe.train_bpe`` with the merge loop compiled (identical merges). Needs numba (a core dependency)."""
    if num_merges <= 0 or not word_counts:
        return []
    words = list(word_counts)
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    wstart = np.zeros(len(words) + 1, np.int64)
    np.cumsum(lengths, out=wstart[1:])
    sym = np.frombuffer(b"".join(words), np.uint8).astype(np.int64)
    weight = np.fromiter(word_counts.values(), np.int64, len(words))
    wlen = lengths.copy()
    table, occ_word, occ_next, hc, hk, scalars = _train_init(sym, wstart, weight)
    merges_out = np.zeros((num_merges, 2), np.int64)
    seen = np.full(len(words), -1, np.int64)
    touched = np.empty(1024, np.int64)
    while scalars[3] < num_merges:
        before = int(scalars[3])
        table, occ_word, occ_next, hc, hk, touched, stopped = _train_steps(
            sym, wstart, wlen, weight, table, occ_word, occ_next, hc, hk, scalars, merges_out, seen, touched,
            chunk, 256, min_frequency)
        if progress is not None:
            progress(int(scalars[3]) - before)
        if stopped:
            break
    return [(int(a), int(b)) for a, b in merges_out[: int(scalars[3])]]
