"""Files: the one JSON reader, and atomic writes (a same-folder temp file, fsync, then ``os.replace``).

An interrupted or failing write never leaves a half-written file under the final name:
either the old file or the complete new one is there. Temp names carry the writer's process id
(``.<name>.<pid>.<random>.tmp``), so the next write to the same target removes the temps a killed writer left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lmforge.errors import FormatError


def read_json(path: str | os.PathLike, parse_float: Callable[[str], Any] | None = None) -> Any:
    """The JSON document in ``path``; a missing, unreadable or malformed file raises ``FormatError`` naming it.

    >>> read_json("missing.json")
    Traceback (most recent call last):
    ...
    lmforge.errors.FormatError: missing.json: file not found
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot read as UTF-8 text ({e})") from None
    try:
        return json.loads(text, parse_float=parse_float)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit fsync it and rename it over ``path``.

    >>> with atomic_open("out.json") as f:  # doctest: +SKIP
    ...     f.write("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp_path)`` (a library that writes to a file name), then fsync and rename to ``path``.

    Used for writers that want a path rather than a file object, e.g. ``safetensors.torch.save_file``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temp_prefix(path: Path) -> str:
    """The temp-name prefix of a write to ``path`` by this process; stale temps of dead writers go first.

    >>> _temp_prefix(Path("/nonexistent/m.json")) == f".m.json.{os.getpid()}."
    True
    """
    remove_stale_temps(path)
    return f".{path.name}.{os.getpid()}."


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files/folders that writers of ``path`` left when they were killed (their process id, in
    the temp's name, no longer runs); temps of running writers and names without a process id stay. Returns the
    removed paths."""
    path = Path(path)
    prefix, removed = f".{path.name}.", []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        pid = entry.name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or _process_runs(int(pid)):
            continue
        temp = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(temp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        removed.append(temp)
    return removed


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or not a pid we can ask about): leave its temp alone
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def aside_path(path: str | os.PathLike) -> Path:
    """Where :func:`atomic_folder` keeps the previous folder during the swap: ``runs/m`` → ``runs/.m.old``."""
    path = Path(path)
    return path.parent / f".{path.name}.old"


def recover_folder(path: str | os.PathLike) -> None:
    """Finish or undo a folder swap that a crash interrupted: a folder moved aside with nothing moved in its
    place goes back under its name; an aside folder left beside a complete new one is deleted."""
    path, aside = Path(path), aside_path(path)
    if not aside.exists():
        return
    if path.exists():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(aside, path)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, keep: Callable[[str], bool] = lambda name: False) -> Iterator[Path]:
    """Build a folder under a temp name beside ``path`` (yielded); on clean exit swap it in as a whole.

    The swap: entries of the existing folder that ``keep(name)`` accepts and the new folder lacks are hard-linked
    into the new one (no data copied, the old folder untouched), the old folder is renamed aside
    (:func:`aside_path`), the new one renamed in, the old one deleted. At every instant ``path`` holds the old
    folder or the complete new one, except between the two renames, where the old one sits aside — which
    :func:`recover_folder` (called by loaders and by the next save) puts back. On an error nothing changes.

    >>> with atomic_folder("model") as tmp:  # doctest: +SKIP
    ...     (tmp / "weights.bin").write_bytes(b"...")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the folder gets a plain mkdir's mode
        yield tmp
        if path.exists():
            for entry in path.iterdir():
                if keep(entry.name) and not (tmp / entry.name).exists():
                    _link_tree(entry, tmp / entry.name)
        for f in tmp.rglob("*"):
            if f.is_file() and not f.is_symlink():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(tmp)
        aside = aside_path(path)
        if path.exists():
            os.replace(path, aside)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link ``src`` (a file or a folder, recursively) at ``dst``; copy where links are not possible."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    else:
        link(str(src), str(dst))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not supported on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
