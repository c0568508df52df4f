"""Word vectors with their words: lookup, nearest neighbours, analogy and similarity evaluation, file formats.

The query and evaluation methods reproduce gensim 4.4's ``KeyedVectors`` procedures step for step (same order of
float32/float64 operations), so the same vectors give the same neighbours and the same analogy accuracy.
Formats: the original word2vec text and binary files (as written by word2vec.c and gensim, both directions) and
lmforge's own safetensors file (vectors + vocabulary + counts).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy.linalg import get_blas_funcs

from lmforge.errors import FormatError, InputError
from lmforge.fileio import atomic_open, atomic_write_with

SAFETENSORS_FORMAT = "lmforge.keyed_vectors"


class UnknownWordError(InputError, KeyError):
    """A word that is not in the vocabulary (also a ``KeyError``, as gensim raises)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def unit_mean(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Weighted mean of unit rows, scaled to unit length, as float32 (gensim's ``get_mean_vector`` arithmetic).

    >>> unit_mean(np.array([[2, 0], [0, 3]], dtype=np.float32) / np.array([[2], [3]], dtype=np.float32), [1, 1])
    array([0.70710677, 0.70710677], dtype=float32)
    """
    mean = np.zeros(vectors.shape[1], dtype=vectors.dtype)
    for row, weight in zip(vectors, weights, strict=False):
        mean += np.float64(weight) * row  # float64 product, stored back into float32 (as gensim does)
    mean = mean / np.float64(sum(abs(float(w)) for w in weights))
    length = get_blas_funcs("nrm2", (mean,))(mean)  # the BLAS norm gensim's unitvec uses: same last bit
    return (mean * (1.0 / length)).astype(np.float32) if length > 0 else mean.astype(np.float32)


def unit_vector(vector: np.ndarray) -> np.ndarray:
    """``vector / |vector|`` in its own precision, through BLAS nrm2/scal as gensim's ``unitvec`` (so near-tied
    similarities rank the same way); a zero vector is returned unchanged.

    >>> unit_vector(np.array([3.0, 4.0], dtype=np.float32))
    array([0.6, 0.8], dtype=float32)
    """
    length = get_blas_funcs("nrm2", (vector,))(vector)
    if length <= 0:
        return vector
    return get_blas_funcs("scal", (vector,))(1.0 / length, vector.copy()).astype(vector.dtype)


class KeyedVectors:
    """A vocabulary (``index_to_key``) and one float32 vector per word (``vectors``, shape ``(V, D)``).

    >>> kv = KeyedVectors(["a", "b", "c"], np.eye(3, dtype=np.float32) + 0.1)
    >>> kv.most_similar("a", topn=1)[0][0] in {"b", "c"}, kv["b"].shape
    (True, (3,))
    """

    def __init__(self, index_to_key: Sequence[str], vectors: np.ndarray, counts: np.ndarray | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(index_to_key):
            raise InputError(f"vectors: expected shape ({len(index_to_key)}, D), got {vectors.shape}")
        self.index_to_key: list[str] = list(index_to_key)
        self.key_to_index: dict[str, int] = {}
        for i, key in enumerate(self.index_to_key):
            self.key_to_index.setdefault(key, i)  # duplicates: the first occurrence wins (as in gensim)
        self.vectors = vectors
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self._norms: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------------- lookup
    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    @property
    def norms(self) -> np.ndarray:
        """L2 norm of every vector, float32 ``(V,)`` (recomputed after ``vectors`` is replaced via ``fill_norms``)."""
        if self._norms is None or len(self._norms) != len(self.vectors):
            self._norms = np.linalg.norm(self.vectors, axis=1)
        return self._norms

    def fill_norms(self, force: bool = True) -> None:
        if force:
            self._norms = None

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, key: str) -> bool:
        return key in self.key_to_index

    def __repr__(self) -> str:
        return f"KeyedVectors({len(self)} words, {self.vector_size} dims)"

    def get_index(self, key: str) -> int:
        try:
            return self.key_to_index[key]
        except KeyError:
            raise UnknownWordError(f"word {key!r} is not in the vocabulary ({len(self)} words)") from None
        except TypeError:
            raise InputError(f"word: expected a string, got {type(key).__name__}") from None

    def get_vector(self, key: str, norm: bool = False) -> np.ndarray:
        i = self.get_index(key)
        return self.vectors[i] / self.norms[i] if norm else self.vectors[i]

    def __getitem__(self, key: str | Iterable[str]) -> np.ndarray:
        """``kv["king"]`` -> ``(D,)``; ``kv[["king", "queen"]]`` -> ``(2, D)``."""
        if isinstance(key, str):
            return self.get_vector(key)
        return np.vstack([self.get_vector(k) for k in key])

    # ------------------------------------------------------------------------------------------------ queries
    def most_similar(
        self,
        positive: str | Sequence[str] | None = None,
        negative: str | Sequence[str] = (),
        topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]]:
        """Words nearest (cosine) to the mean of the unit ``positive`` vectors minus the ``negative`` ones.

        The input words are excluded; ``restrict_vocab`` searches only the first N words. ``topn=None`` returns
        the similarity of every word as an array.
        """
        positive = [positive] if isinstance(positive, str) else list(positive or [])
        negative = [negative] if isinstance(negative, str) else list(negative or [])
        if not positive and not negative:
            raise InputError("most_similar: give at least one positive or negative word")
        indices = [self.get_index(w) for w in positive + negative]
        weights = [1.0] * len(positive) + [-1.0] * len(negative)
        return self._nearest(indices, weights, topn, restrict_vocab or len(self))

    def _nearest(self, indices: list[int], weights: list[float], topn: int | None, clip: int):
        if topn is not None and topn < 1:
            return []
        unit = self.vectors[indices] / self.norms[indices][:, None]
        mean = unit_mean(unit, weights)
        sims = self.vectors[:clip] @ mean / self.norms[:clip]
        if topn is None:
            return sims
        best = _top_indices(sims, topn + len(indices))
        excluded = set(indices)
        return [(self.index_to_key[i], float(sims[i])) for i in best if i not in excluded][:topn]

    def similar_by_vector(self, vector: np.ndarray, topn: int = 10) -> list[tuple[str, float]]:
        """Words nearest (cosine) to a raw vector ``(D,)``."""
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.vector_size,):
            raise InputError(f"vector: expected shape ({self.vector_size},), got {vector.shape}")
        length = np.linalg.norm(vector)
        sims = self.vectors @ (vector / (length if length > 0 else 1.0)) / self.norms
        return [(self.index_to_key[i], float(sims[i])) for i in _top_indices(sims, topn)]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words."""
        return float(np.dot(unit_vector(self[a]), unit_vector(self[b])))

    def doesnt_match(self, words: Sequence[str]) -> str:
        """The word farthest (cosine) from the mean of the words' unit vectors.

        >>> KeyedVectors(["x", "y", "z"], np.array([[1, 0], [1, .1], [0, 1]])).doesnt_match(["x", "y", "z"])
        'z'
        """
        words = list(words)
        if not words:
            raise InputError("doesnt_match: give at least one word")
        unit = np.vstack([self.get_vector(w, norm=True) for w in words]).astype(np.float32)
        sims = unit @ unit_mean(unit, [1.0] * len(words))
        return sorted(zip(sims, words, strict=False), reverse=True)[-1][1]

    # --------------------------------------------------------------------------------------------- evaluation
    def _case_vocab(self, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
        """Key -> index over the first ``restrict_vocab`` words; upper-cased keys keep their first occurrence."""
        vocab = {}
        for key in self.index_to_key[:restrict_vocab]:
            vocab.setdefault(key.upper() if case_insensitive else key, self.key_to_index[key])
        return vocab

    def evaluate_word_analogies(
        self, analogies: str | os.PathLike, restrict_vocab: int = 300000, case_insensitive: bool = True
    ) -> tuple[float, list[dict]]:
        """Accuracy on a "questions-words" file (``: section`` lines, then ``a b c d`` meaning a:b = c:d).

        3CosAdd over the first ``restrict_vocab`` words: the answer is the nearest word to ``b - a + c`` other
        than a, b, c; questions with a word outside that vocabulary are skipped. Returns the overall accuracy
        and one dict per section (``section``, ``correct``, ``incorrect`` lists of 4-tuples) ending with
        ``Total accuracy`` — the same procedure and result as gensim's method of the same name.
        """
        path = Path(analogies)
        vocab = self._case_vocab(restrict_vocab, case_insensitive)
        clip = min(restrict_vocab, len(self))
        sections: list[dict] = []
        section = None
        questions = 0
        for line_no, line in enumerate(_read_lines(path)):
            if line.startswith(": "):
                section = {"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []}
                sections.append(section)
                continue
            if section is None:
                raise FormatError(f"{path}: line {line_no + 1}: a question before the first ': section' line")
            words = [w.upper() for w in line.split()] if case_insensitive else line.split()
            if len(words) != 4:
                continue  # blank or malformed lines are skipped, as gensim does
            questions += 1
            a, b, c, expected = words
            if a not in vocab or b not in vocab or c not in vocab or expected not in vocab:
                continue
            ignore = {a, b, c}
            predicted = None
            for key, _ in self._nearest([vocab[b], vocab[c], vocab[a]], [1.0, 1.0, -1.0], 5, clip):
                predicted = key.upper() if case_insensitive else key
                if predicted in vocab and predicted not in ignore:
                    break
            section["correct" if predicted == expected else "incorrect"].append((a, b, c, expected))
        if questions == 0:
            raise FormatError(f"{path}: no analogy questions found (expected lines 'a b c d' after ': section')")
        total = {
            "section": "Total accuracy",
            "correct": list(itertools.chain.from_iterable(s["correct"] for s in sections)),
            "incorrect": list(itertools.chain.from_iterable(s["incorrect"] for s in sections)),
        }
        sections.append(total)
        return section_accuracy(total), sections

    def evaluate_word_pairs(
        self,
        pairs: str | os.PathLike,
        delimiter: str = "\t",
        restrict_vocab: int = 300000,
        case_insensitive: bool = True,
    ):
        """Correlation of cosine similarities with human scores in a ``word1<TAB>word2<TAB>score`` file.

        Returns ``(pearson, spearman, oov_ratio)``: scipy's result objects (``(statistic, pvalue)`` tuples) and the
        percentage of pairs skipped for unknown words — as gensim's method of the same name.
        """
        from scipy import stats

        path = Path(pairs)
        vocab = self._case_vocab(restrict_vocab, case_insensitive)
        gold, model, oov = [], [], 0
        for line in _read_lines(path):
            if not line or line.startswith("#"):
                continue
            fields = line.split(delimiter)
            if len(fields) != 3:
                continue
            a, b, score = [f.upper() for f in fields] if case_insensitive else fields
            try:
                score = float(score)
            except ValueError:
                continue
            if a not in vocab or b not in vocab:
                oov += 1
                continue
            gold.append(score)
            model.append(np.dot(unit_vector(self.vectors[vocab[a]]), unit_vector(self.vectors[vocab[b]])))
        if not gold:
            raise FormatError(f"{path}: no scored word pairs with known words (expected 'word1<TAB>word2<TAB>score')")
        return stats.pearsonr(gold, model), stats.spearmanr(gold, model), oov / (len(gold) + oov) * 100

    # ---------------------------------------------------------------------------------------------- formats
    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Write the word2vec.c format: a ``V D`` header, then per word ``word v1 ... vD`` (text, ``%.9g`` which
        round-trips float32 exactly) or ``word `` + D little-endian float32 + newline (binary)."""
        path = Path(path)
        for key in self.index_to_key:
            if not key or any(ch.isspace() for ch in key):
                raise InputError(f"{path}: word {key!r} is empty or holds whitespace; word2vec files cannot store it")
        with atomic_open(path, "wb") as f:
            f.write(f"{len(self)} {self.vector_size}\n".encode())
            if binary:
                little_endian = self.vectors.astype("<f4")
                for key, row in zip(self.index_to_key, little_endian, strict=False):
                    f.write(key.encode("utf-8") + b" " + row.tobytes() + b"\n")
            else:
                template = " ".join(["%.9g"] * self.vector_size)
                for key, row in zip(self.index_to_key, self.vectors.tolist(), strict=False):
                    f.write((key + " " + template % tuple(row) + "\n").encode("utf-8"))

    @classmethod
    def load_word2vec_format(
        cls, path: str | os.PathLike, binary: bool = False, limit: int | None = None
    ) -> KeyedVectors:
        """Read a word2vec.c / gensim text or binary vectors file (first ``limit`` words if given)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise FormatError(f"{path}: cannot read ({e.strerror})") from None
        header, _, body = data.partition(b"\n")
        try:
            count, size = (int(x) for x in header.split())
        except ValueError:
            raise FormatError(
                f"{path}: line 1: expected a header 'VOCAB_SIZE VECTOR_SIZE', got {header[:60]!r}"
            ) from None
        if count < 0 or size < 1:
            raise FormatError(f"{path}: line 1: bad header {count} {size}")
        if limit is not None:
            count = min(count, limit)
        reader = _read_binary_body if binary else _read_text_body
        words, vectors = reader(path, body, count, size)
        return cls(words, vectors)

    def save(self, path: str | os.PathLike) -> None:
        """Write lmforge's safetensors file: ``vectors`` (V, D) float32, ``counts`` (V,) int64 if known, and the
        vocabulary as JSON in the header metadata."""
        from safetensors.numpy import save_file

        tensors = {"vectors": self.vectors}
        if self.counts is not None:
            tensors["counts"] = self.counts
        metadata = {"format": SAFETENSORS_FORMAT, "vocab": json.dumps(self.index_to_key, ensure_ascii=False)}
        atomic_write_with(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeyedVectors:
        """Read a file written by ``save``."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != SAFETENSORS_FORMAT or "vectors" not in f.keys():
                    raise FormatError(f"{path}: not an lmforge word-vectors file (format={SAFETENSORS_FORMAT})")
                vectors = f.get_tensor("vectors")
                counts = f.get_tensor("counts") if "counts" in f.keys() else None
        except (SafetensorError, OSError) as e:
            raise FormatError(f"{path}: cannot read as safetensors ({e})") from None
        try:
            words = json.loads(metadata["vocab"])
        except (KeyError, ValueError):
            raise FormatError(f"{path}: metadata 'vocab' is missing or not a JSON list of words") from None
        if len(words) != len(vectors):
            raise FormatError(f"{path}: {len(words)} words but {len(vectors)} vectors")
        return cls(words, vectors, counts)


def load_vectors(path: str | os.PathLike) -> KeyedVectors:
    """Word vectors from a file, the format chosen by its suffix: ``.safetensors`` (lmforge's), ``.bin`` (word2vec
    binary, as gensim writes it) or anything else as word2vec text. A missing file is an InputError naming it."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such vectors file (train one with 'lmforge word2vec train --out {p}')")
    if p.suffix == ".safetensors":
        return KeyedVectors.load(p)
    return KeyedVectors.load_word2vec_format(p, binary=p.suffix == ".bin")


def save_vectors(kv: KeyedVectors, path: str | os.PathLike) -> None:
    """Write word vectors in the format :func:`load_vectors` picks for the same suffix."""
    p = Path(path)
    if p.suffix == ".safetensors":
        kv.save(p)
    else:
        kv.save_word2vec_format(p, binary=p.suffix == ".bin")


def section_accuracy(section: dict) -> float:
    """Fraction correct in one analogy section (0.0 when it holds no evaluated question).

    >>> section_accuracy({"correct": [1, 2, 3], "incorrect": [4]})
    0.75
    """
    correct, incorrect = len(section["correct"]), len(section["incorrect"])
    return correct / (correct + incorrect) if correct + incorrect else 0.0


def _top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest scores, largest first (numpy's partial sort, as gensim's ``argsort``)."""
    negated = -scores
    if n >= negated.size:
        return np.argsort(negated)[:n]
    top = np.argpartition(negated, n)[:n]
    return top.take(np.argsort(negated.take(top)))


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split("\n")
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not valid UTF-8 text (byte {e.start})") from None


def _read_text_body(path: Path, body: bytes, count: int, size: int) -> tuple[list[str], np.ndarray]:
    lines = body.split(b"\n", count)[:count]
    if len(lines) < count or (lines and not lines[-1].strip()):
        raise FormatError(f"{path}: header promises {count} words but the file ends early")
    words = []
    numbers = []
    for line_no, line in enumerate(lines, start=2):
        parts = line.rstrip().split(b" ")
        if len(parts) != size + 1:
            raise FormatError(f"{path}: line {line_no}: expected a word and {size} numbers, got {len(parts) - 1}")
        try:
            words.append(parts[0].decode("utf-8"))
        except UnicodeDecodeError:
            raise FormatError(f"{path}: line {line_no}: the word is not valid UTF-8") from None
        numbers.append(b" ".join(parts[1:]))
    try:
        flat = np.array(b" ".join(numbers).split(), dtype=np.float32)
    except ValueError as e:
        raise FormatError(f"{path}: a vector holds a value that is not a number ({e})") from None
    return words, flat.reshape(count, size)


def _read_binary_body(path: Path, body: bytes, count: int, size: int) -> tuple[list[str], np.ndarray]:
    vector_bytes = 4 * size
    vectors = np.empty((count, size), dtype=np.float32)
    words = []
    pos = 0
    for i in range(count):
        space = body.find(b" ", pos)
        if space < 0 or len(body) - (space + 1) < vector_bytes:
            raise FormatError(f"{path}: header promises {count} words but the file ends after {i} (truncated?)")
        try:
            # word2vec.c ends each vector with a newline, gensim does not: strip it from the next word
            words.append(body[pos:space].decode("utf-8").lstrip("\n"))
        except UnicodeDecodeError:
            raise FormatError(f"{path}: word {i + 1} is not valid UTF-8 (a text file? use binary=False)") from None
        vectors[i] = np.frombuffer(body, dtype="<f4", count=size, offset=space + 1)
        pos = space + 1 + vector_bytes
    return words, vectors
