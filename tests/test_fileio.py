"""Atomic writes: a failure partway leaves the previous file intact and no temp file behind."""

from __future__ import annotations

import pytest

from lmforge.fileio import atomic_open, atomic_write_text, atomic_write_with


def test_atomic_write_replaces_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failure_partway_keeps_previous_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "previous")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half of the new cont")
        raise RuntimeError("disk full")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_write_with_path_writer(tmp_path):
    target = tmp_path / "sub" / "w.bin"

    def fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("interrupted")

    with pytest.raises(OSError):
        atomic_write_with(target, fail)
    assert not target.exists()
    atomic_write_with(target, lambda tmp: open(tmp, "wb").write(b"complete"))
    assert target.read_bytes() == b"complete"
    assert [p.name for p in target.parent.iterdir()] == ["w.bin"]
