"""Where text comes from: the built-in corpus, or the user's files, folders and globs.

The built-in corpus is CPython's reference documentation (``pydoc_data.topics``, ~465 KB of English prose),
which ships with every Python, so every command works with no data of the user's.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from lmforge.errors import InputError

BUILTIN = "builtin"
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text", ".cor", ".csv", ".tsv", ".jsonl", ".py", ""}


def builtin_documents() -> list[str]:
    """The built-in corpus as a list of documents (one per documentation topic, in a fixed order).

    >>> docs = builtin_documents(); len(docs) > 50 and "assignment" in " ".join(docs)
    True
    """
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def builtin_text() -> str:
    """The built-in corpus as one string (documents separated by blank lines)."""
    return "\n\n".join(builtin_documents())


def resolve_paths(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (recursively, text-like files) and globs into a sorted, de-duplicated file list.

    >>> resolve_paths(["no/such/file.txt"])  # doctest: +SKIP
    InputError: no/such/file.txt: no such file, folder or glob match
    """
    out: list[Path] = []
    for src in sources:
        s = os.fspath(src)
        p = Path(s)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(
                q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in TEXT_SUFFIXES
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            if not found:
                raise InputError(f"{s}: folder holds no text files ({', '.join(sorted(TEXT_SUFFIXES - {''}))})")
            out.extend(found)
        else:
            matches = sorted(Path(m) for m in glob.glob(s, recursive=True) if Path(m).is_file())
            if not matches:
                raise InputError(f"{s}: no such file, folder or glob match")
            out.extend(matches)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def read_text_file(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file; a binary or non-UTF-8 file gets a clear error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    if b"\x00" in data[:8192]:
        raise InputError(f"{path}: looks like a binary file (NUL bytes); expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 text (byte {e.start})") from None


def iter_documents(sources: Iterable[str | os.PathLike] | None = None) -> Iterator[str]:
    """Yield documents: each file's text, or the built-in corpus's documents when ``sources`` is empty/None
    or is ``["builtin"]``."""
    sources = list(sources or [])
    if not sources or sources == [BUILTIN]:
        yield from builtin_documents()
        return
    for path in resolve_paths(sources):
        yield read_text_file(path)


def iter_lines(sources: Iterable[str | os.PathLike] | None = None) -> Iterator[str]:
    """Yield non-empty lines of the documents (``iter_documents``), without their line ends."""
    for doc in iter_documents(sources):
        for line in doc.splitlines():
            if line.strip():
                yield line
