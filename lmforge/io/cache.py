"""A cache of converted weights (e.g. a GGUF file dequantized to float32), as safetensors files.

Converting a quantized file costs seconds to minutes; reading a safetensors file back costs well under a second.
Entries live in ``$LMFORGE_CACHE`` (default ``~/.cache/lmforge``) under a key made from the SOURCE file's content
hash, so renaming or copying the source still hits, and changing a byte of it misses.

An entry holds tensors plus string metadata (for a GGUF file: its config and tokenizer, so a warm load never
parses the GGUF again) and a SHA-256 of all of that in the safetensors header: an entry that was truncated (full
disk, a killed copy) or corrupted is detected on read and made again. Entries are written atomically (temp file +
rename), so a reader never sees a half-written one, and two processes making the same entry at once both end
with a whole file (the last rename wins; the two are identical).

Eviction: an entry's modification time is its LAST USE (a cache hit touches it). After every write, the
least-recently-used entries are deleted until the cache fits in ``$LMFORGE_CACHE_MAX_GB`` (default
:data:`DEFAULT_MAX_GB` GB; ``none`` for no cap) — never the entry just written, even when it alone is larger.
Deleting an entry another process is reading is safe on POSIX (its open file stays readable); a reader that finds
the entry gone simply makes it again. ``lmforge cache list`` / ``lmforge cache clear`` show and prune the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.errors import ConfigError
from lmforge.fileio import atomic_write_with

if TYPE_CHECKING:
    import torch

CACHE_ENV = "LMFORGE_CACHE"
MAX_GB_ENV = "LMFORGE_CACHE_MAX_GB"
# A 1B-parameter model dequantized to float32 is 4 GB: the default keeps a handful of small models, and a bigger
# entry is never evicted right after it was written (so one large model still works).
DEFAULT_MAX_GB = 20.0
ENTRY_SUFFIX = ".safetensors"
_TEMP_SUFFIX = ".tmp"  # lmforge.fileio's temp files: ".<name>.<pid>.<random>.tmp" next to the target
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
    except FileNotFoundError:
        return None  # evicted (by another process) between the check and the read: a plain miss
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
        _touch(path)
        return entry
    tensors, metadata = make()
    try:
        write_entry(path, tensors, metadata)
        evict_to_cap(keep=path)
    except OSError as e:
        warnings.warn(f"could not write cache entry {path}: {e}", stacklevel=2)
    return tensors, metadata


def _touch(path: Path) -> None:
    """Mark an entry as used now (its mtime is its last use); a read-only cache just keeps the old time."""
    try:
        os.utime(path)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------- listing and eviction

@dataclass(frozen=True)
class CacheEntry:
    """One cache file: where it is, its size in bytes, its last use (seconds since the epoch) and the source file
    it was made from (as recorded when it was written; ``None`` if unknown)."""

    path: Path
    kind: str
    key: str
    size: int
    last_used: float
    source: str | None


def _header_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file, from its JSON header alone (no tensor is read).

    >>> # file = [8-byte little-endian header length][{"__metadata__": {"source": "m.gguf"}, ...}][tensor bytes]
    """
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100_000_000:
            raise ValueError(f"header length {length}")
        return dict(json.loads(f.read(length)).get("__metadata__") or {})


def list_entries() -> list[CacheEntry]:
    """Every entry in the cache, least recently used first. Temp files of writes in progress are not entries."""
    root = cache_dir()
    entries = []
    for path in root.glob(f"*/*{ENTRY_SUFFIX}"):
        if path.name.startswith("."):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # evicted while we looked
        try:
            source = _header_metadata(path).get("source")
        except (OSError, ValueError):
            source = None  # damaged: still listed (and clearable); reading it makes it again
        entries.append(CacheEntry(path=path, kind=path.parent.name, key=path.name[: -len(ENTRY_SUFFIX)],
                                  size=stat.st_size, last_used=stat.st_mtime, source=source))
    return sorted(entries, key=lambda e: (e.last_used, e.path.name))


def max_cache_bytes() -> int | None:
    """The size cap from ``$LMFORGE_CACHE_MAX_GB`` (GB = 10**9 bytes; ``none``/``off``: no cap), default
    :data:`DEFAULT_MAX_GB`.

    >>> max_cache_bytes()  # with LMFORGE_CACHE_MAX_GB unset
    20000000000
    """
    raw = os.environ.get(MAX_GB_ENV, "").strip()
    if not raw:
        return int(DEFAULT_MAX_GB * 1e9)
    if raw.lower() in ("none", "off", "unlimited"):
        return None
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb >= 0 or gb == float("inf"):
        raise ConfigError(f"${MAX_GB_ENV}={raw!r}: expected a size in GB (a number >= 0) or 'none'")
    return int(gb * 1e9)


def _remove(path: Path) -> bool:
    """Delete a file another process may delete too; True if this call deleted it."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def evict_to_cap(keep: Path | None = None, max_bytes: int | None = None) -> list[CacheEntry]:
    """Delete least-recently-used entries until the cache fits in ``max_bytes`` (``None``: the cap of
    :func:`max_cache_bytes`, which may be no cap), never ``keep``. Returns the deleted entries.

    >>> # entries a (used 3 days ago, 5 GB), b (yesterday, 5 GB), c (just written, 12 GB); cap 20 GB → [a]
    """
    limit = max_cache_bytes() if max_bytes is None else max_bytes
    if limit is None:
        return []
    entries = list_entries()
    total = sum(e.size for e in entries)
    removed = []
    for entry in entries:  # oldest use first
        if total <= limit:
            break
        if keep is not None and entry.path == keep:
            continue
        if _remove(entry.path):
            removed.append(entry)
        total -= entry.size
    return removed


def clear(*, older_than_days: float | None = None) -> list[CacheEntry]:
    """Delete the entries last used more than ``older_than_days`` days ago (``None``: every entry), and temp files
    of interrupted writes as old as that. Returns the deleted entries.

    >>> # clear(older_than_days=30): entries nobody loaded for a month
    """
    if older_than_days is not None and not older_than_days >= 0:
        raise ConfigError(f"older than {older_than_days!r} days: expected a number of days >= 0")
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed = [e for e in list_entries()
               if (cutoff is None or e.last_used < cutoff) and _remove(e.path)]
    for temp in cache_dir().glob(f"*/.*{_TEMP_SUFFIX}"):
        try:
            written = temp.stat().st_mtime
        except FileNotFoundError:
            continue
        # A write in progress keeps its temp file fresh: only one untouched for a day was surely interrupted.
        if time.time() - written > 86400 and (cutoff is None or written < cutoff):
            _remove(temp)
    return removed
