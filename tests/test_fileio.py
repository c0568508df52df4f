"""Atomic writes: a failure partway leaves the previous file intact and no temp file behind."""

from __future__ import annotations

import os

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


# ---------------------------------------------------------------- whole folders


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_folder_swaps_the_whole_folder_and_keeps_what_it_is_told(tmp_path):
    from lmforge.fileio import atomic_folder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights-old-shard.bin").write_bytes(b"stale")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "step-1.bin").write_bytes(b"ckpt")
    with atomic_folder(folder, keep=lambda name: name == "checkpoints") as tmp:
        assert tmp != folder and tmp.parent == folder.parent
        (tmp / "weights.bin").write_bytes(b"new")
        assert _tree(folder) == {"weights-old-shard.bin": b"stale", "checkpoints/step-1.bin": b"ckpt"}  # untouched
    assert _tree(folder) == {"weights.bin": b"new", "checkpoints/step-1.bin": b"ckpt"}  # the stale shard is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp or aside folder left


def test_atomic_folder_error_changes_nothing(tmp_path):
    from lmforge.fileio import atomic_folder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        (tmp / "a.bin").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert _tree(folder) == {"a.bin": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


KILLER = """
import os, signal, sys
from pathlib import Path
import lmforge.fileio as fileio

calls = []
real_replace = os.replace
def replace(a, b):
    calls.append((a, b))
    if len(calls) == int(sys.argv[2]):  # die at the n-th rename of the swap
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(a, b)
fileio.os.replace = replace
with fileio.atomic_folder(sys.argv[1]) as tmp:
    (tmp / "a.bin").write_bytes(b"new" * 1000)
"""


@pytest.mark.parametrize("die_at", [1, 2])
def test_a_save_killed_midway_loses_nothing(tmp_path, die_at):
    """SIGKILL at the first rename (old moved aside) or the second (new moved in): afterwards the folder holds the
    old content or the complete new one, never a mix, and never nothing once recovered."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from lmforge.fileio import aside_path, recover_folder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"old")
    (folder / "b.bin").write_bytes(b"old-only")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(folder), str(die_at)], env=env, timeout=120)
    assert proc.returncode == -9
    if die_at == 2:  # killed between the renames: the old folder is aside, nothing under the name yet
        assert not folder.exists() and aside_path(folder).exists()
    recover_folder(folder)
    assert _tree(folder) == {"a.bin": b"old", "b.bin": b"old-only"}
    assert not aside_path(folder).exists()


def test_stale_temps_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale_file, stale_dir = tmp_path / f".a.json.{dead}.x1.tmp", tmp_path / f".a.json.{dead}.x2.tmp"
    live = tmp_path / f".a.json.{os.getppid()}.x3.tmp"  # a running writer's temp
    other = tmp_path / f".b.json.{dead}.x4.tmp"  # another target's temp
    no_pid = tmp_path / ".a.json.abc.tmp"  # not lmforge's naming: left alone
    stale_file.write_text("half"), stale_dir.mkdir(), (stale_dir / "w.bin").write_bytes(b"half")
    for p in (live, other, no_pid):
        p.write_text("x")
    atomic_write_text(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", live.name, other.name, no_pid.name])
