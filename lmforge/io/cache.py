"""A cache of converted weights (e.g. a GGUF file dequantized to float32), as safetensors files.

Converting a quantized file costs seconds to minutes; reading a safetensors file back costs well under a second.
Entries live in ``$LMFORGE_CACHE`` (default ``~/.cache/lmforge``) under a key made from the SOURCE file's content
hash, so renaming or copying the source still hits, and changing a byte of it misses.

An entry holds tensors plus string metadata (for a GGUF file: its config and tokenizer, so a warm load never
parses the GGUF again) and a SHA-256 of all of that in the safetensors header: an entry that was truncated (full
disk, a killed copy) or corrupted is detected on read and made again. Entries are written atomically (temp file +
rename), so a reader never sees a half-written one.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.fileio import atomic_write_with

if TYPE_CHECKING:
    import torch

CACHE_ENV = "LMFORGE_CACHE"
_DIGEST_KEY = "lmforge.tensors_sha256"
_CHUNK = 1 << 24


def cache_dir() -> Path:
    """The cache folder: ``$LMFORGE_CACHE`` if set, else ``~/.cache/lmforge``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lmforge"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content, read in chunks (constant memory).

    >>> file_sha256("/dev/null")
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_sha256(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """SHA-256 over ``metadata`` and the names, dtypes, shapes and raw bytes of ``tensors`` in name order
    (independent of how the file lays them out)."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(metadata or {}):
        digest.update(f"{key}={metadata[key]}\n".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def entry_path(key: str, kind: str = "gguf") -> Path:
    """Where the entry for ``key`` lives: ``<cache_dir>/<kind>/<key>.safetensors``."""
    return cache_dir() / kind / f"{key}.safetensors"


def read_entry(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """``(tensors, metadata)`` of a cache entry, or ``None`` if it is missing, truncated or fails its checksum."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        warnings.warn(f"cache entry {path} is unreadable ({type(e).__name__}: {e}); making it again", stacklevel=3)
        return None
    expected = metadata.pop(_DIGEST_KEY, None)
    if expected is None or tensors_sha256(tensors, metadata) != expected:
        warnings.warn(f"cache entry {path} fails its checksum (corrupt); making it again", stacklevel=3)
        return None
    return tensors, metadata


def write_entry(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (and string ``metadata``) as a safetensors entry with its checksum, atomically."""
    from safetensors.torch import save_file

    metadata = dict(metadata or {})
    header = {**metadata, _DIGEST_KEY: tensors_sha256(tensors, metadata)}
    contiguous = {name: t.detach().contiguous() for name, t in tensors.items()}
    atomic_write_with(path, lambda tmp: save_file(contiguous, tmp, metadata=header))


def cached(
    key: str,
    make: Callable[[], tuple[dict[str, torch.Tensor], dict[str, str]]],
    *,
    kind: str = "gguf",
    use_cache: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return the ``(tensors, metadata)`` cached under ``key``, or ``make()`` them and cache the result.

    A failure to WRITE the cache (read-only home, full disk) only warns: the caller still gets its result.
    """
    if not use_cache:
        return make()
    path = entry_path(key, kind)
    entry = read_entry(path)
    if entry is not None:
        return entry
    tensors, metadata = make()
    try:
        write_entry(path, tensors, metadata)
    except OSError as e:
        warnings.warn(f"could not write cache entry {path}: {e}", stacklevel=2)
    return tensors, metadata
