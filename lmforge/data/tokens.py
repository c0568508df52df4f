"""Token files: a corpus tokenized once into flat binary files that training reads as random blocks.

``prepare_tokens(sources, tokenizer, out_dir)`` writes::

    out_dir/train.bin       every training token, back to back (numpy uint16 when the vocab fits, else uint32)
    out_dir/val.bin         the validation tokens (the last ``val_fraction`` of the token stream)
    out_dir/tokenizer.json  the tokenizer that made them (Hugging Face format)
    out_dir/manifest.json   dtype, counts, the tokenizer's hash, every source file with its size and sha256

Documents are joined with the tokenizer's end-of-text token, so the model learns where one text stops.
Re-running on unchanged input (same files, same contents, same tokenizer, same options) reuses the files.
Training then samples random contiguous ``block_size + 1`` windows (:class:`BlockSampler`), reading the
files as memory maps: a corpus larger than RAM costs nothing to open.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.data.corpus import BUILTIN, builtin_documents, read_text_file, resolve_paths
from lmforge.errors import ConfigError, FormatError, InputError
from lmforge.fileio import atomic_open, atomic_write_text

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's canonical Hugging Face JSON: two tokenizers that encode alike hash alike.

    ``tokenizer_fingerprint(tok) -> 'sha256:3f1a…'``
    """
    hf = tokenizer.to_hf_json()
    text = hf if isinstance(hf, str) else json.dumps(hf, sort_keys=True, ensure_ascii=False)
    canonical = json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: ``token_dtype(50257) -> uint16``, ``(100277) -> uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe_sources(sources: Sequence[str | os.PathLike] | None) -> tuple[list[dict], list[Path] | None]:
    """Manifest entries for the sources (path, bytes, sha256) and the resolved files (None: built-in corpus)."""
    sources = [os.fspath(s) for s in (sources or [])]
    if not sources or sources == [BUILTIN]:
        text = "\n\n".join(builtin_documents()).encode("utf-8")
        return [{"path": BUILTIN, "bytes": len(text), "sha256": hashlib.sha256(text).hexdigest()}], None
    paths = resolve_paths(sources)
    return [{"path": str(p), "bytes": p.stat().st_size, "sha256": _sha256_file(p)} for p in paths], paths


@dataclass
class TokenData:
    """An opened token folder: ``train`` and ``val`` token arrays (memory-mapped) and its manifest."""

    folder: Path
    train: np.ndarray
    val: np.ndarray
    manifest: dict

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / "tokenizer.json"

    def check_tokenizer(self, tokenizer: Any, source: str = "tokenizer") -> None:
        """Refuse a tokenizer other than the one these tokens were made with (its ids would mean other text)."""
        if tokenizer_fingerprint(tokenizer) != self.manifest["tokenizer_sha256"]:
            raise ConfigError(
                f"{self.folder}: tokens were made with another tokenizer (manifest tokenizer_sha256 "
                f"{self.manifest['tokenizer_sha256'][:19]}…, {source} hashes to "
                f"{tokenizer_fingerprint(tokenizer)[:19]}…); run 'lmforge data prepare' again with this tokenizer"
            )


def _write_tokens(path: Path, chunks: Iterable[np.ndarray], dtype: np.dtype) -> int:
    count = 0
    with atomic_open(path, "wb") as f:
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
            count += len(chunk)
    return count


def prepare_tokens(
    sources: Sequence[str | os.PathLike] | None,
    tokenizer: Any,
    out_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    num_workers: int | None = None,
    force: bool = False,
) -> TokenData:
    """Tokenize ``sources`` (files, folders, globs; None or ``["builtin"]``: the built-in corpus) into ``out_dir``.

    Encodes in bulk on all cores (``tokenizer.encode_many``). Returns the opened :class:`TokenData`; when the
    folder already holds tokens of the same sources, tokenizer and options, they are reused unless ``force``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction: expected a value between 0 and 1 (exclusive), got {val_fraction}")
    out = Path(out_dir)
    described, paths = _describe_sources(sources)
    fingerprint = tokenizer_fingerprint(tokenizer)
    vocab_size = int(tokenizer.vocab_size)
    eos = getattr(tokenizer, "eos_token_id", None)
    identity = {"format_version": FORMAT_VERSION, "sources": described, "tokenizer_sha256": fingerprint,
                "val_fraction": val_fraction, "separator_id": eos}
    if not force and (out / MANIFEST).exists():
        with contextlib.suppress(FormatError, OSError, KeyError, ValueError):  # stale/damaged: rebuild
            existing = open_tokens(out)
            if all(existing.manifest.get(k) == v for k, v in identity.items()):
                return existing

    texts = builtin_documents() if paths is None else [read_text_file(p) for p in paths]
    for path, text in zip(paths or [], texts if paths else [], strict=True):
        if not text.strip():
            raise InputError(f"{path}: file is empty (no text to tokenize)")
    encoded = tokenizer.encode_many(texts, add_special_tokens=False, num_workers=num_workers)
    dtype = token_dtype(vocab_size)
    pieces: list[np.ndarray] = []
    for ids in encoded:
        pieces.append(np.asarray(ids, dtype=np.int64))
        if eos is not None:
            pieces.append(np.array([eos], dtype=np.int64))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    if len(stream) < 20:
        raise InputError(f"{', '.join(d['path'] for d in described)}: only {len(stream)} tokens; need more text "
                         f"to train on")
    if stream.max() >= vocab_size:
        raise FormatError(f"tokenizer produced id {int(stream.max())} >= its vocab_size {vocab_size}")
    n_val = max(1, int(round(len(stream) * val_fraction)))
    out.mkdir(parents=True, exist_ok=True)
    n_train = _write_tokens(out / "train.bin", [stream[:-n_val]], dtype)
    _write_tokens(out / "val.bin", [stream[-n_val:]], dtype)
    tokenizer.save(str(out / "tokenizer.json"), format="hf")
    manifest = {
        **identity,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "documents": len(texts),
        "train_tokens": n_train,
        "val_tokens": n_val,
        "characters": sum(len(t) for t in texts),
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return open_tokens(out)


def open_tokens(folder: str | os.PathLike) -> TokenData:
    """Open a folder written by :func:`prepare_tokens` (memory maps; nothing is read yet)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise InputError(f"{folder}: no {MANIFEST}; make a token folder with 'lmforge data prepare'")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        dtype = np.dtype(manifest["dtype"])
        counts = {split: int(manifest[f"{split}_tokens"]) for split in ("train", "val")}
        vocab_size = int(manifest["vocab_size"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{manifest_path}: not a valid token manifest ({e})") from None
    arrays = {}
    for split, count in counts.items():
        path = folder / f"{split}.bin"
        size = path.stat().st_size if path.exists() else -1
        if size != count * dtype.itemsize:
            raise FormatError(f"{path}: expected {count} {dtype.name} tokens ({count * dtype.itemsize} bytes), "
                              f"found {'no file' if size < 0 else f'{size} bytes'}")
        arrays[split] = np.memmap(path, dtype=dtype, mode="r", shape=(count,))
        # One pass over the ids (memory-bandwidth bound): an id the model cannot embed would otherwise surface
        # as an index error deep inside training, or never if no sampled window happened to hold it.
        if count and int(arrays[split].max()) >= vocab_size:
            bad = int(np.argmax(arrays[split] >= vocab_size))
            raise FormatError(f"{path}: token {bad} is id {int(arrays[split][bad])}, outside the vocabulary "
                              f"(vocab_size {vocab_size} in {manifest_path.name})")
    return TokenData(folder=folder, train=arrays["train"], val=arrays["val"], manifest=manifest)


class BlockSampler:
    """Random contiguous windows of ``block_size + 1`` tokens: inputs ``x`` and next-token targets ``y``.

    Its whole state (a PCG64 generator and a batch counter) is plain data, saved in every checkpoint, so a
    resumed run draws exactly the windows the uninterrupted run would have.

    >>> s = BlockSampler(np.arange(100, dtype=np.uint16), block_size=4, seed=0)
    >>> x, y = s.next_batch(2); x.shape, bool((y[:, :-1] == x[:, 1:]).all())
    ((2, 4), True)
    """

    def __init__(self, tokens: np.ndarray, block_size: int, seed: int = 0) -> None:
        if len(tokens) < block_size + 1:
            raise ConfigError(f"block_size {block_size}: the token split holds only {len(tokens)} tokens; need "
                              f"at least block_size + 1 — use a smaller --block-size or more text")
        self.tokens, self.block_size = tokens, block_size
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.batches = 0

    def next_offsets(self, n: int) -> np.ndarray:
        """``n`` random window starts in ``[0, len - block_size - 1]``."""
        self.batches += 1
        return self.rng.integers(0, len(self.tokens) - self.block_size, size=n)

    def windows(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``, each ``(n, block_size)`` int64, for the given window starts."""
        block = np.stack([self.tokens[o : o + self.block_size + 1] for o in offsets]).astype(np.int64)
        return block[:, :-1], block[:, 1:]

    def next_batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.windows(self.next_offsets(n))

    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state, "batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
        self.batches = int(state["batches"])


def fixed_windows(tokens: np.ndarray, block_size: int, max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_windows`` non-overlapping windows spread evenly over ``tokens`` (deterministic evaluation).

    >>> x, y = fixed_windows(np.arange(10), 3, 5); x.tolist()
    [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    """
    n_fit = (len(tokens) - 1) // block_size
    if n_fit < 1:
        raise ConfigError(f"block_size {block_size}: the validation split holds only {len(tokens)} tokens; "
                          f"need at least block_size + 1 — use a larger --val-fraction or a smaller --block-size")
    starts = np.linspace(0, (n_fit - 1) * block_size, num=min(n_fit, max_windows)).astype(np.int64)
    starts = (starts // block_size) * block_size  # keep windows on the non-overlapping grid
    block = np.stack([tokens[s : s + block_size + 1] for s in starts]).astype(np.int64)
    return block[:, :-1], block[:, 1:]
