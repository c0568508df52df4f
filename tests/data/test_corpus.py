"""The built-in corpus and resolution of the user's files, folders and globs."""

from __future__ import annotations

import pytest

from lmforge.data.corpus import (
    builtin_documents,
    builtin_text,
    iter_documents,
    iter_lines,
    read_text_file,
    resolve_paths,
)
from lmforge.errors import InputError, LmforgeError


def test_builtin_corpus_is_cpython_docs():
    from pydoc_data.topics import topics

    docs = builtin_documents()
    assert len(docs) == len(topics)
    text = builtin_text()
    assert 300_000 < len(text.encode()) < 2_000_000  # ~465 KB of prose
    assert "The assignment statement" in text or "assignment" in text


def test_default_sources_are_builtin():
    assert list(iter_documents()) == builtin_documents()
    assert list(iter_documents(["builtin"])) == builtin_documents()
    first = next(iter_lines())
    assert first.strip() and "\n" not in first


def test_files_folders_globs(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n\nbeta\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("gamma")
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.txt").write_text("secret")
    assert resolve_paths([tmp_path]) == [tmp_path / "a.txt", tmp_path / "sub" / "b.md"]
    assert resolve_paths([str(tmp_path / "**" / "*.md")]) == [tmp_path / "sub" / "b.md"]
    # duplicates are removed, order kept
    assert resolve_paths([tmp_path / "a.txt", str(tmp_path / "*.txt")]) == [tmp_path / "a.txt"]
    assert list(iter_lines([tmp_path / "a.txt"])) == ["alpha", "beta"]


def test_bad_sources_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="nope.txt"):
        resolve_paths([tmp_path / "nope.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmforgeError, match="no text files"):
        resolve_paths([tmp_path / "empty"])
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"abc\x00\x01\x02")
    with pytest.raises(InputError, match="binary"):
        read_text_file(binary)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        read_text_file(latin)
